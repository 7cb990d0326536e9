//! When to rotate, decided without I/O and with the clock passed in, so the
//! in-cluster task and `unroot certs rotate` take the same decisions and a
//! test can put the clock exactly on a boundary.
//!
//! - A serving certificate is renewed once 2/3 of its lifetime have passed.
//! - The CA is renewed once less than 1/3 of its lifetime is left.
//! - A lifetime counts from issuance (`NotBefore` + [`BACKDATE`]) to
//!   `NotAfter`.
//!
//! A CA rotation never leaves the API server unable to verify the serving
//! certificate:
//!
//! 1. the new CA goes into `ca.crt`, the old one into `ca-previous.crt`; the
//!    serving certificate (signed by the old CA) stays. Every caBundle now
//!    holds both CAs;
//! 2. once every webhook configuration holds that bundle, and a propagation
//!    delay has passed, a serving certificate signed by the new CA is issued;
//! 3. once the replicas have had the propagation delay to load it, the old
//!    CA is dropped from the Secret, and so from every caBundle.

use std::time::{Duration, SystemTime};

use super::inspect::Certificate;
use super::issue::{Authority, BACKDATE, Names};
use super::secret::{Contents, Issuer, Parsed};
use super::{Error, Result};

/// What the rotation aims at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Lifetime of a new CA.
    pub ca_lifetime: Duration,
    /// Lifetime of a new serving certificate (capped at its CA's expiry).
    pub serving_lifetime: Duration,
    /// How long to wait for a change to reach every API server (a new
    /// caBundle) or every replica (a new serving certificate).
    pub propagation_delay: Duration,
    /// The names the serving certificate must carry.
    pub names: Names,
}

/// A certificate's validity window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// `NotBefore`.
    pub not_before: SystemTime,
    /// `NotAfter`.
    pub not_after: SystemTime,
}

impl Window {
    /// The window of `cert`.
    #[must_use]
    pub fn of(cert: &Certificate) -> Self {
        Self {
            not_before: cert.not_before,
            not_after: cert.not_after,
        }
    }

    /// When the certificate was issued: `NotBefore` + [`BACKDATE`] (for a
    /// certificate shorter than that, `NotBefore`).
    #[must_use]
    pub fn issued_at(&self) -> SystemTime {
        let backdated = self.not_before + BACKDATE;
        if backdated < self.not_after {
            backdated
        } else {
            self.not_before
        }
    }

    /// From issuance to expiry.
    #[must_use]
    pub fn lifetime(&self) -> Duration {
        self.not_after
            .duration_since(self.issued_at())
            .unwrap_or_default()
    }

    /// When a serving certificate is due for renewal: 2/3 into its lifetime.
    #[must_use]
    pub fn serving_renewal_at(&self) -> SystemTime {
        self.issued_at() + self.lifetime() * 2 / 3
    }

    /// The CA is due once `now` is past this: exactly 1/3 of its lifetime left.
    #[must_use]
    pub fn ca_renewal_at(&self) -> SystemTime {
        self.not_after - self.lifetime() / 3
    }

    /// Whether a serving certificate with this window is due at `now`.
    #[must_use]
    pub fn serving_due(&self, now: SystemTime) -> bool {
        now >= self.serving_renewal_at()
    }

    /// Whether a CA with this window is due at `now` (less than 1/3 left).
    #[must_use]
    pub fn ca_due(&self, now: SystemTime) -> bool {
        now > self.ca_renewal_at()
    }
}

/// Where the serving certificate stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServingFacts {
    /// Its window.
    pub window: Window,
    /// Signed by `ca.crt` (else by a CA being retired).
    pub signed_by_current: bool,
    /// It carries exactly the wanted names.
    pub names_match: bool,
}

/// What the decision looks at, read from the Secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    /// The usable current CA's window.
    pub ca: Option<Window>,
    /// The serving certificate, when usable (valid, matching key, signed by
    /// a CA of the bundle).
    pub serving: Option<ServingFacts>,
    /// A CA is being retired (`ca-previous.crt` holds a valid one).
    pub retiring: bool,
}

impl Observed {
    /// Reads the facts from a parsed Secret.
    #[must_use]
    pub fn from_parsed(parsed: &Parsed, names: &Names) -> Self {
        let serving = parsed.serving().ok().map(|leaf| ServingFacts {
            window: Window::of(&leaf.cert),
            signed_by_current: leaf.issuer == Issuer::Current,
            names_match: leaf.cert.names().same_as(names),
        });
        Self {
            ca: parsed.ca.as_ref().ok().map(Window::of),
            serving,
            retiring: !parsed.previous.is_empty(),
        }
    }
}

/// Why a certificate is (re)issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// There is none, or it cannot be used.
    Unusable,
    /// It reached its renewal point.
    Due,
    /// The wanted names changed.
    NamesChanged,
    /// It was signed by a CA being retired.
    SignedByRetiredCa,
    /// It outlives its CA.
    OutlivesCa,
    /// Asked for (`unroot certs rotate --force`).
    Forced,
}

impl Reason {
    /// For logs and Events.
    #[must_use]
    pub fn describe(self) -> &'static str {
        match self {
            Self::Unusable => "none usable",
            Self::Due => "renewal due",
            Self::NamesChanged => "names changed",
            Self::SignedByRetiredCa => "signed by the CA being retired",
            Self::OutlivesCa => "outlives its CA",
            Self::Forced => "forced",
        }
    }
}

/// What happens to `ca-previous.crt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retire {
    /// Stays as it is.
    Keep,
    /// Emptied: no serving certificate signed by an old CA remains.
    Clear,
    /// Becomes the CA that signed the serving certificate in use (the CA
    /// being replaced).
    SigningCa,
}

/// One write to the Secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Issue a new CA.
    pub ca: Option<Reason>,
    /// Issue a new serving certificate (from the new CA when there is one).
    pub serving: Option<Reason>,
    /// What becomes of `ca-previous.crt`.
    pub retire: Retire,
}

/// The decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to do before `recheck_at`.
    Idle {
        /// When to look again.
        recheck_at: SystemTime,
    },
    /// The serving certificate must move to the new CA, but the caBundle
    /// holding it has not been in every webhook configuration long enough.
    AwaitBundle {
        /// When the delay runs out, once the bundle is confirmed.
        recheck_at: Option<SystemTime>,
    },
    /// Write this to the Secret.
    Write(Plan),
}

/// Decides the next step at `now`. `bundle_confirmed_at` is when every
/// webhook configuration was first seen holding the caBundle of the Secret
/// as it is (`None`: not yet).
#[must_use]
pub fn decide(
    observed: &Observed,
    policy: &Policy,
    now: SystemTime,
    bundle_confirmed_at: Option<SystemTime>,
) -> Decision {
    let ca_reason = match observed.ca {
        None => Some(Reason::Unusable),
        Some(ca) if ca.ca_due(now) => Some(Reason::Due),
        Some(_) => None,
    };
    let Some(ca) = observed.ca.filter(|_| ca_reason.is_none()) else {
        return Decision::Write(new_ca(observed, ca_reason.unwrap_or(Reason::Unusable)));
    };
    let Some(serving) = observed.serving else {
        // Nothing valid to serve: issue at once. A CA being retired stays,
        // for replicas still serving a certificate it signed.
        return Decision::Write(Plan {
            ca: None,
            serving: Some(Reason::Unusable),
            retire: Retire::Keep,
        });
    };
    if !serving.signed_by_current {
        let Some(confirmed) = bundle_confirmed_at else {
            return Decision::AwaitBundle { recheck_at: None };
        };
        let ready_at = confirmed + policy.propagation_delay;
        if now < ready_at {
            return Decision::AwaitBundle {
                recheck_at: Some(ready_at),
            };
        }
        return Decision::Write(serving_only(Reason::SignedByRetiredCa));
    }
    let reason = if !serving.names_match {
        Some(Reason::NamesChanged)
    } else if serving.window.not_after > ca.not_after {
        Some(Reason::OutlivesCa)
    } else if serving.window.serving_due(now) {
        Some(Reason::Due)
    } else {
        None
    };
    if let Some(reason) = reason {
        return Decision::Write(serving_only(reason));
    }
    // The CA is due just after its boundary instant, so look again a
    // second later rather than exactly on it.
    let mut recheck_at = serving
        .window
        .serving_renewal_at()
        .min(ca.ca_renewal_at() + Duration::from_secs(1));
    if observed.retiring {
        let retire_at = serving.window.issued_at() + policy.propagation_delay;
        if now >= retire_at {
            return Decision::Write(Plan {
                ca: None,
                serving: None,
                retire: Retire::Clear,
            });
        }
        recheck_at = recheck_at.min(retire_at);
    }
    Decision::Idle { recheck_at }
}

fn new_ca(observed: &Observed, reason: Reason) -> Plan {
    match observed.serving {
        // Keep serving the current certificate; its CA stays in the bundle
        // until a certificate from the new CA has replaced it.
        Some(_) => Plan {
            ca: Some(reason),
            serving: None,
            retire: Retire::SigningCa,
        },
        None => Plan {
            ca: Some(reason),
            serving: Some(Reason::Unusable),
            retire: Retire::Clear,
        },
    }
}

fn serving_only(reason: Reason) -> Plan {
    Plan {
        ca: None,
        serving: Some(reason),
        retire: Retire::Keep,
    }
}

/// The plan for `unroot certs rotate --force ca|serving`.
#[must_use]
pub fn forced(observed: &Observed, ca: bool) -> Plan {
    if ca || observed.ca.is_none() {
        new_ca(observed, Reason::Forced)
    } else {
        serving_only(Reason::Forced)
    }
}

/// Carries out `plan` on `contents` at `now`: issues what it asks for and
/// returns the new Secret contents.
pub fn execute(
    contents: &Contents,
    parsed: &Parsed,
    plan: &Plan,
    policy: &Policy,
    now: SystemTime,
) -> Result<Contents> {
    let mut next = contents.clone();
    let signing_ca = parsed.serving().ok().and_then(|leaf| match leaf.issuer {
        Issuer::Current => parsed.ca_cert.clone(),
        Issuer::Previous(i) => parsed.previous.get(i).cloned(),
        Issuer::Unknown => None,
    });
    let authority = if plan.ca.is_some() {
        let ca = Authority::issue_at(now, policy.ca_lifetime)?;
        next.ca_cert.clone_from(&ca.cert_pem);
        ca.key_pem().clone_into(&mut next.ca_key);
        Some(ca)
    } else if plan.serving.is_some() {
        Some(Authority::from_pem(&contents.ca_cert, &contents.ca_key)?)
    } else {
        None
    };
    next.ca_previous = match plan.retire {
        Retire::Keep => parsed.previous.iter().map(Certificate::to_pem).collect(),
        Retire::Clear => String::new(),
        Retire::SigningCa => signing_ca.map(|c| c.to_pem()).unwrap_or_default(),
    };
    if plan.serving.is_some() {
        let ca = authority.ok_or_else(|| Error::Invalid("no CA to sign with".to_owned()))?;
        let serving = ca.issue_serving_at(&policy.names, now, policy.serving_lifetime)?;
        next.tls_cert = serving.cert_pem;
        next.tls_key = serving.key_pem;
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);
    const T0: u64 = 1_800_000_000;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn policy() -> Policy {
        Policy {
            ca_lifetime: Duration::from_secs(360),
            serving_lifetime: Duration::from_secs(120),
            propagation_delay: Duration::from_secs(5),
            names: Names::local(),
        }
    }

    /// A window issued at `issued` (seconds) lasting `life` seconds.
    fn window(issued: u64, life: u64) -> Window {
        Window {
            not_before: at(issued) - HOUR,
            not_after: at(issued + life),
        }
    }

    fn observed(ca: Window, serving: Window) -> Observed {
        Observed {
            ca: Some(ca),
            serving: Some(ServingFacts {
                window: serving,
                signed_by_current: true,
                names_match: true,
            }),
            retiring: false,
        }
    }

    #[test]
    fn serving_renewal_happens_exactly_at_two_thirds() {
        let ca = window(T0, 3600);
        let leaf = window(T0, 120);
        assert_eq!(leaf.issued_at(), at(T0));
        assert_eq!(leaf.lifetime(), Duration::from_secs(120));
        assert_eq!(leaf.serving_renewal_at(), at(T0 + 80));
        // (case, now, expected)
        let cases = [
            ("a second before 2/3", at(T0 + 79), None),
            (
                "a nanosecond before 2/3",
                at(T0 + 80) - Duration::from_nanos(1),
                None,
            ),
            ("exactly at 2/3", at(T0 + 80), Some(Reason::Due)),
            ("after 2/3", at(T0 + 100), Some(Reason::Due)),
        ];
        for (case, now, want) in cases {
            let got = match decide(&observed(ca, leaf), &policy(), now, None) {
                Decision::Write(plan) => plan.serving,
                Decision::Idle { recheck_at } => {
                    assert_eq!(recheck_at, at(T0 + 80), "{case}: recheck at the boundary");
                    None
                }
                other @ Decision::AwaitBundle { .. } => panic!("{case}: {other:?}"),
            };
            assert_eq!(got, want, "{case}");
        }
    }

    #[test]
    fn ca_renewal_happens_with_less_than_a_third_left() {
        let ca = window(T0, 360);
        assert_eq!(ca.ca_renewal_at(), at(T0 + 240));
        let cases = [
            ("half left", at(T0 + 180), None),
            ("exactly a third left", at(T0 + 240), None),
            (
                "a nanosecond less than a third",
                at(T0 + 240) + Duration::from_nanos(1),
                Some(Reason::Due),
            ),
            ("a minute left", at(T0 + 300), Some(Reason::Due)),
        ];
        for (case, now, want) in cases {
            // A fresh serving certificate, so only the CA can be due.
            let secs = now.duration_since(UNIX_EPOCH).unwrap().as_secs();
            let leaf = window(secs, 50);
            let got = match decide(&observed(ca, leaf), &policy(), now, None) {
                Decision::Write(plan) => plan.ca,
                _ => None,
            };
            assert_eq!(got, want, "{case}");
        }
    }

    #[test]
    fn ca_rotation_keeps_the_old_ca_until_the_new_serving_certificate_is_out() {
        let p = policy();
        let old_ca = window(T0, 360);
        let leaf = window(T0 + 200, 120);
        let now = at(T0 + 250);
        // Step 1: a new CA, the serving certificate stays, the old CA retires.
        assert_eq!(
            decide(&observed(old_ca, leaf), &p, now, None),
            Decision::Write(Plan {
                ca: Some(Reason::Due),
                serving: None,
                retire: Retire::SigningCa
            })
        );
        // Step 2: serving certificate signed by the retiring CA: wait for the bundle.
        let new_ca = window(T0 + 250, 360);
        let mut o = observed(new_ca, leaf);
        o.serving.as_mut().unwrap().signed_by_current = false;
        o.retiring = true;
        assert_eq!(
            decide(&o, &p, at(T0 + 251), None),
            Decision::AwaitBundle { recheck_at: None }
        );
        assert_eq!(
            decide(&o, &p, at(T0 + 254), Some(at(T0 + 251))),
            Decision::AwaitBundle {
                recheck_at: Some(at(T0 + 256))
            },
            "confirmed, but the propagation delay has not passed"
        );
        assert_eq!(
            decide(&o, &p, at(T0 + 256), Some(at(T0 + 251))),
            Decision::Write(Plan {
                ca: None,
                serving: Some(Reason::SignedByRetiredCa),
                retire: Retire::Keep
            })
        );
        // Step 3: new serving certificate from the new CA; the old CA goes
        // once the replicas had the delay to load it.
        let mut o = observed(new_ca, window(T0 + 256, 120));
        o.retiring = true;
        assert_eq!(
            decide(&o, &p, at(T0 + 258), Some(at(T0 + 251))),
            Decision::Idle {
                recheck_at: at(T0 + 261)
            }
        );
        assert_eq!(
            decide(&o, &p, at(T0 + 261), Some(at(T0 + 251))),
            Decision::Write(Plan {
                ca: None,
                serving: None,
                retire: Retire::Clear
            })
        );
    }

    #[test]
    fn nothing_usable_issues_everything_at_once() {
        let empty = Observed {
            ca: None,
            serving: None,
            retiring: false,
        };
        assert_eq!(
            decide(&empty, &policy(), at(T0), None),
            Decision::Write(Plan {
                ca: Some(Reason::Unusable),
                serving: Some(Reason::Unusable),
                retire: Retire::Clear
            })
        );
        let mut no_leaf = observed(window(T0, 360), window(T0, 120));
        no_leaf.serving = None;
        no_leaf.retiring = true;
        assert_eq!(
            decide(&no_leaf, &policy(), at(T0), None),
            Decision::Write(Plan {
                ca: None,
                serving: Some(Reason::Unusable),
                retire: Retire::Keep
            })
        );
    }

    #[test]
    fn changed_names_or_a_serving_certificate_outliving_its_ca_are_reissued() {
        let mut o = observed(window(T0, 360), window(T0, 120));
        o.serving.as_mut().unwrap().names_match = false;
        assert!(matches!(
            decide(&o, &policy(), at(T0 + 1), None),
            Decision::Write(Plan {
                serving: Some(Reason::NamesChanged),
                ..
            })
        ));
        let o = observed(window(T0, 100), window(T0, 120));
        assert!(matches!(
            decide(&o, &policy(), at(T0 + 1), None),
            Decision::Write(Plan {
                serving: Some(Reason::OutlivesCa),
                ..
            })
        ));
    }

    fn contents_from(ca: &Authority, now: SystemTime, p: &Policy) -> Contents {
        let serving = ca
            .issue_serving_at(&p.names, now, p.serving_lifetime)
            .unwrap();
        Contents {
            ca_cert: ca.cert_pem.clone(),
            ca_key: ca.key_pem().to_owned(),
            tls_cert: serving.cert_pem,
            tls_key: serving.key_pem,
            ca_previous: String::new(),
        }
    }

    /// Runs decide + execute until idle, as the task does, and returns the
    /// caBundle after every write.
    #[test]
    fn the_bundle_holds_old_and_new_ca_exactly_while_needed() {
        let p = policy();
        let start = SystemTime::now();
        let old = Authority::issue_at(start, p.ca_lifetime).unwrap();
        // The serving certificate was renewed at 200 s, so it is valid at 250 s.
        let mut contents = contents_from(&old, start + Duration::from_secs(200), &p);
        let old_pem = Certificate::parse_pem(&old.cert_pem).unwrap()[0].to_pem();
        // Jump to where the CA is due (the serving certificate still valid).
        let now = start + Duration::from_secs(250);
        let parsed = contents.parse(now);
        let leaf_before = parsed.leaf.as_ref().unwrap().cert.fingerprint.clone();
        let plan = match decide(&Observed::from_parsed(&parsed, &p.names), &p, now, None) {
            Decision::Write(plan) => plan,
            other => panic!("{other:?}"),
        };
        contents = execute(&contents, &parsed, &plan, &p, now).unwrap();
        let parsed = contents.parse(now);
        let new_pem = parsed.ca_cert.as_ref().unwrap().to_pem();
        assert_ne!(new_pem, old_pem);
        assert_eq!(
            parsed.ca_bundle(now),
            format!("{new_pem}{old_pem}"),
            "both CAs"
        );
        assert_eq!(
            parsed.leaf.as_ref().unwrap().cert.fingerprint,
            leaf_before,
            "serving kept"
        );
        assert_eq!(parsed.leaf.as_ref().unwrap().issuer, Issuer::Previous(0));

        let confirmed = now + Duration::from_secs(1);
        let now = confirmed + p.propagation_delay;
        let plan = match decide(
            &Observed::from_parsed(&parsed, &p.names),
            &p,
            now,
            Some(confirmed),
        ) {
            Decision::Write(plan) => plan,
            other => panic!("{other:?}"),
        };
        contents = execute(&contents, &parsed, &plan, &p, now).unwrap();
        let parsed = contents.parse(now);
        assert_eq!(parsed.leaf.as_ref().unwrap().issuer, Issuer::Current);
        assert_eq!(
            parsed.ca_bundle(now),
            format!("{new_pem}{old_pem}"),
            "still both"
        );

        let now = now + p.propagation_delay + Duration::from_secs(1);
        let plan = match decide(
            &Observed::from_parsed(&parsed, &p.names),
            &p,
            now,
            Some(confirmed),
        ) {
            Decision::Write(plan) => plan,
            other => panic!("{other:?}"),
        };
        contents = execute(&contents, &parsed, &plan, &p, now).unwrap();
        let parsed = contents.parse(now);
        assert_eq!(parsed.ca_bundle(now), new_pem, "only the new CA");
        assert!(contents.ca_previous.is_empty());
        assert!(matches!(
            decide(
                &Observed::from_parsed(&parsed, &p.names),
                &p,
                now,
                Some(confirmed)
            ),
            Decision::Idle { .. }
        ));
    }

    #[test]
    fn serving_certificates_never_outlive_their_ca() {
        let p = Policy {
            serving_lifetime: Duration::from_secs(3600),
            ..policy()
        };
        let now = SystemTime::now();
        let ca = Authority::issue_at(now, p.ca_lifetime).unwrap();
        let contents = contents_from(&ca, now, &p);
        let parsed = contents.parse(now);
        assert_eq!(parsed.leaf.unwrap().cert.not_after, ca.not_after());
    }
}
