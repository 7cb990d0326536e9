//! User provisioning without sudo: a pod runs as the identity its trusted
//! spawner claims, with a generated `/etc/passwd` and `/etc/group`, and one
//! vetted init container creates the home directory.
//!
//! The identity comes from pod annotations: `unroot.dev/user`,
//! `unroot.dev/uid`, `unroot.dev/gid` (required), `unroot.dev/groups`
//! (`name:gid,...`) and `unroot.dev/home` (optional). They are honoured only
//! when every rule holds — provisioning enabled, the namespace selected by
//! `provisioning.namespaceSelector`, the requester listed in
//! `provisioning.trustedRequesters`, ids inside the policy's ranges (never 0),
//! a POSIX portable user name that can also name the ConfigMap
//! `unroot-identity-<user>`, a home below the home volume — and a pod that
//! carries any of them while breaking a rule is denied with every broken rule
//! named, so a tenant cannot claim someone else's identity.
//!
//! For an honoured identity the pod gets:
//! - pod-level `runAsUser`, `runAsGroup`, `fsGroup` and `supplementalGroups`
//!   from the identity (an explicit different value, at pod or container
//!   level, is denied, never overwritten);
//! - the volume `unroot-identity` (the ConfigMap `unroot-identity-<user>`,
//!   which the admission shell server-side-applies) mounted read-only with
//!   `subPath` at `/etc/passwd` and `/etc/group` in every container and init
//!   container but the provisioning one;
//! - the policy's home volume, unless the pod has a volume of that name, and
//!   its mount in every container;
//! - the provisioning init container, first in `initContainers`.

//! - `claim`: parsing the claim and checking every rule;
//! - `artifacts`: what is injected (the init container, the ConfigMap, the
//!   identity volume and mounts);
//! - `apply`: writing an honoured identity into the pod;
//! - `provenance`: what a stored pod's claim is worth, for `/validate`.

mod apply;
mod artifacts;
mod claim;
mod provenance;
#[cfg(test)]
mod testing;

pub(crate) use self::apply::provision;
pub use self::artifacts::{identity_config_map, injected_container};
pub use self::claim::{Denial, Identity, Requester, Rule, claimed_identity};
pub use self::provenance::{
    Vouched, identity_annotations_changed, is_injected, provenance_index, vouch,
};

/// The user name annotation.
pub const USER_ANNOTATION: &str = "unroot.dev/user";
/// The user id annotation.
pub const UID_ANNOTATION: &str = "unroot.dev/uid";
/// The primary group id annotation.
pub const GID_ANNOTATION: &str = "unroot.dev/gid";
/// The supplementary groups annotation (`name:gid,...`).
pub const GROUPS_ANNOTATION: &str = "unroot.dev/groups";
/// The home directory annotation (default `<homeVolume.mountPath>/<user>`).
pub const HOME_ANNOTATION: &str = "unroot.dev/home";
/// Every identity annotation; a pod carrying any of them claims an identity.
pub const IDENTITY_ANNOTATIONS: [&str; 5] = [
    USER_ANNOTATION,
    UID_ANNOTATION,
    GID_ANNOTATION,
    GROUPS_ANNOTATION,
    HOME_ANNOTATION,
];
/// The volume holding the generated passwd and group files.
pub const IDENTITY_VOLUME: &str = "unroot-identity";
/// The identity ConfigMap is this prefix followed by the user name.
pub const CONFIG_MAP_PREFIX: &str = "unroot-identity-";
