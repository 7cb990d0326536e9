//! Reading and adding the volumes, volume mounts and environment variables
//! of a pod, as the trust-bundle and provisioning mutations need them: each
//! addition changes the working copy (the view) and writes its operation.

use std::borrow::Cow;

use k8s_openapi::api::core::v1::{Volume, VolumeMount};
use serde::Deserialize as _;
use serde_json::Value;

use super::writer::{Seg, Writer};
use crate::view;

/// Whether two mount paths name the same directory (`/a/` is `/a`).
pub(crate) fn same_path(a: &str, b: &str) -> bool {
    let trim = |s: &str| {
        let t = s.trim_end_matches('/');
        if t.is_empty() { "/" } else { t }.to_owned()
    };
    trim(a) == trim(b)
}

/// The volume mount of `c` whose `mountPath` is `path`: its index and value.
pub(crate) fn mount_at<'c>(
    c: &'c view::Container<'_>,
    path: &str,
) -> Option<(usize, &'c VolumeMount)> {
    c.volume_mounts
        .iter()
        .flatten()
        .enumerate()
        .find(|(_, m)| same_path(&m.mount_path, path))
}

/// Appends `item` to the list at `path`, which holds `len` items, or is
/// absent (`None`) in a parent of which `parent` segments exist.
fn append(w: &mut Writer, path: &[Seg], len: Option<usize>, parent: usize, item: Value) {
    let mut at = path.to_vec();
    if let Some(len) = len {
        at.push(Seg::Index(len));
        w.add(&at, path.len(), item);
    } else {
        at.push(Seg::Index(0));
        w.add(&at, parent, item);
    }
}

/// Appends `mount` to the volume mounts of `c`, the container at `container`.
pub(crate) fn push_mount(
    c: &mut view::Container<'_>,
    w: &mut Writer,
    container: &[Seg],
    mount: VolumeMount,
) {
    let mut path = container.to_vec();
    path.push(Seg::Key("volumeMounts"));
    append(
        w,
        &path,
        c.volume_mounts.as_ref().map(Vec::len),
        container.len(),
        serde_json::to_value(&mount).unwrap_or_default(),
    );
    c.volume_mounts.get_or_insert_with(Vec::new).push(mount);
}

/// Appends the environment variable `entry` (named `name`) to `c`, the
/// container at `container`.
pub(crate) fn push_env(
    c: &mut view::Container<'_>,
    w: &mut Writer,
    container: &[Seg],
    name: &str,
    entry: Value,
) {
    let mut path = container.to_vec();
    path.push(Seg::Key("env"));
    append(
        w,
        &path,
        c.env.as_ref().map(Vec::len),
        container.len(),
        entry,
    );
    c.env.get_or_insert_with(Vec::new).push(view::EnvName {
        name: Cow::Owned(name.to_owned()),
    });
}

/// Appends `volume` (as the patch adds it) to the volumes of `pod`, whose
/// spec is at `spec`.
pub(crate) fn push_volume(pod: &mut view::Pod<'_>, w: &mut Writer, spec: &[Seg], volume: Value) {
    let mut path = spec.to_vec();
    path.push(Seg::Key("volumes"));
    // The working copy needs only what the mutations read of it: its name
    // and source. A volume unroot builds always decodes.
    let typed = Volume::deserialize(&volume).unwrap_or_else(|_| Volume {
        name: volume
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        ..Volume::default()
    });
    let parent = spec.len() - usize::from(!pod.spec.present);
    append(
        w,
        &path,
        pod.spec.volumes.as_ref().map(Vec::len),
        parent,
        volume,
    );
    pod.spec.present = true;
    pod.spec
        .volumes
        .get_or_insert_with(Vec::new)
        .push(Box::new(typed));
}
