//! Pod Security Standards: levels, versions, checks and the evaluator.
