//! Pod Security Standards: levels, versions, checks and the evaluator.

/// Checks the registry of checks at start-up (placeholder until the checks land).
pub fn validate_registry() -> Result<(), String> {
    Ok(())
}
