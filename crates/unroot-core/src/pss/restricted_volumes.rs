//! `restrictedVolumes` (restricted, v1.0): only volume types that cannot reach
//! the host are allowed. Overrides `hostPathVolumes` in the restricted profile.
//!
//! Restricted fields:
//! - `spec.volumes[*]`
//!
//! Allowed values: a volume with any of `configMap`, `csi`, `downwardAPI`,
//! `emptyDir`, `ephemeral`, `image`, `persistentVolumeClaim`, `projected`,
//! `secret` set.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Volume;

use super::message::{plural, push_quoted};
use super::{Check, Failure, Input, Level, VersionedCheck, v};

pub(crate) fn check() -> Check {
    Check {
        id: "restrictedVolumes",
        level: Level::Restricted,
        versions: const {
            &[VersionedCheck {
                min: v(1, 0),
                eval: v1_0,
                overrides: &["hostPathVolumes"],
            }]
        },
    }
}

fn is_allowed(v: &Volume) -> bool {
    v.config_map.is_some()
        || v.csi.is_some()
        || v.downward_api.is_some()
        || v.empty_dir.is_some()
        || v.ephemeral.is_some()
        || v.image.is_some()
        || v.persistent_volume_claim.is_some()
        || v.projected.is_some()
        || v.secret.is_some()
}

/// The name upstream reports for a restricted volume: the first source set,
/// in upstream's order.
fn restricted_type(v: &Volume) -> &'static str {
    let sources = [
        (v.host_path.is_some(), "hostPath"),
        (v.gce_persistent_disk.is_some(), "gcePersistentDisk"),
        (v.aws_elastic_block_store.is_some(), "awsElasticBlockStore"),
        (v.git_repo.is_some(), "gitRepo"),
        (v.nfs.is_some(), "nfs"),
        (v.iscsi.is_some(), "iscsi"),
        (v.glusterfs.is_some(), "glusterfs"),
        (v.rbd.is_some(), "rbd"),
        (v.flex_volume.is_some(), "flexVolume"),
        (v.cinder.is_some(), "cinder"),
        (v.cephfs.is_some(), "cephfs"),
        (v.flocker.is_some(), "flocker"),
        (v.fc.is_some(), "fc"),
        (v.azure_file.is_some(), "azureFile"),
        (v.vsphere_volume.is_some(), "vsphereVolume"),
        (v.quobyte.is_some(), "quobyte"),
        (v.azure_disk.is_some(), "azureDisk"),
        (v.photon_persistent_disk.is_some(), "photonPersistentDisk"),
        (v.portworx_volume.is_some(), "portworxVolume"),
        (v.scale_io.is_some(), "scaleIO"),
        (v.storageos.is_some(), "storageos"),
    ];
    sources
        .iter()
        .find(|(set, _)| *set)
        .map_or("unknown", |(_, name)| name)
}

fn v1_0(input: &Input<'_>) -> Option<Failure> {
    let mut names = Vec::new();
    let mut types = BTreeSet::new();
    for volume in input.volumes() {
        if !is_allowed(volume) {
            names.push(volume.name.as_str());
            types.insert(restricted_type(volume));
        }
    }
    if names.is_empty() {
        return None;
    }
    let mut detail = String::from(plural(names.len(), "volume ", "volumes "));
    push_quoted(&mut detail, names.iter().copied());
    detail.push_str(plural(
        names.len(),
        " uses restricted volume ",
        " use restricted volume ",
    ));
    detail.push_str(plural(types.len(), "type ", "types "));
    push_quoted(&mut detail, types.iter().copied());
    Some(Failure::new("restricted volume types", detail))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::check;
    use crate::pss::testing::{assert_cases, case, pod};

    const REASON: &str = "restricted volume types";

    #[test]
    fn allowed_volume_types() {
        let volumes = json!([
            {"name": "a", "configMap": {"name": "x"}},
            {"name": "b", "csi": {"driver": "x"}},
            {"name": "c", "downwardAPI": {}},
            {"name": "d", "emptyDir": {}},
            {"name": "e", "ephemeral": {}},
            {"name": "f", "image": {"reference": "x"}},
            {"name": "g", "persistentVolumeClaim": {"claimName": "x"}},
            {"name": "h", "projected": {}},
            {"name": "i", "secret": {}},
            {"name": "j", "secret": {}, "hostPath": {"path": "/"}},
        ]);
        assert_cases(
            check,
            &[
                case(
                    "every allowed type",
                    "latest",
                    pod(json!({"volumes": volumes.clone()})),
                    None,
                ),
                case(
                    "image allowed at v1.0",
                    "v1.0",
                    pod(json!({"volumes": volumes})),
                    None,
                ),
                case("no volumes", "v1.0", pod(json!({})), None),
            ],
        );
    }

    #[test]
    fn restricted_volume_types() {
        let sources = [
            ("hostPath", json!({"path": "/"})),
            ("gcePersistentDisk", json!({"pdName": "x"})),
            ("awsElasticBlockStore", json!({"volumeID": "x"})),
            ("gitRepo", json!({"repository": "x"})),
            ("nfs", json!({"server": "x", "path": "/"})),
            ("iscsi", json!({"targetPortal": "x", "iqn": "x", "lun": 0})),
            ("glusterfs", json!({"endpoints": "x", "path": "x"})),
            ("rbd", json!({"monitors": [], "image": "x"})),
            ("flexVolume", json!({"driver": "x"})),
            ("cinder", json!({"volumeID": "x"})),
            ("cephfs", json!({"monitors": []})),
            ("flocker", json!({})),
            ("fc", json!({})),
            ("azureFile", json!({"secretName": "x", "shareName": "x"})),
            ("vsphereVolume", json!({"volumePath": "x"})),
            ("quobyte", json!({"registry": "x", "volume": "x"})),
            ("azureDisk", json!({"diskName": "x", "diskURI": "x"})),
            ("photonPersistentDisk", json!({"pdID": "x"})),
            ("portworxVolume", json!({"volumeID": "x"})),
            (
                "scaleIO",
                json!({"gateway": "x", "system": "x", "secretRef": {}}),
            ),
            ("storageos", json!({})),
        ];
        let mut cases: Vec<_> = sources
            .iter()
            .map(|(field, source)| {
                let mut volume = json!({"name": "v"});
                volume[*field] = source.clone();
                case(
                    *field,
                    "latest",
                    pod(json!({"volumes": [volume]})),
                    Some((
                        REASON,
                        &format!("volume \"v\" uses restricted volume type \"{field}\""),
                    )),
                )
            })
            .collect();
        cases.extend([
            case(
                "no source is unknown",
                "latest",
                pod(json!({"volumes": [{"name": "v"}]})),
                Some((REASON, "volume \"v\" uses restricted volume type \"unknown\"")),
            ),
            case(
                "first source in upstream order names the type",
                "latest",
                pod(json!({"volumes": [{"name": "v", "nfs": {"server": "x", "path": "/"}, "hostPath": {"path": "/"}}]})),
                Some((REASON, "volume \"v\" uses restricted volume type \"hostPath\"")),
            ),
            case(
                "names in spec order, types sorted",
                "v1.0",
                pod(json!({"volumes": [
                    {"name": "z", "nfs": {"server": "x", "path": "/"}},
                    {"name": "ok", "emptyDir": {}},
                    {"name": "h", "hostPath": {"path": "/"}},
                    {"name": "h2", "hostPath": {"path": "/"}},
                ]})),
                Some((REASON, "volumes \"z\", \"h\", \"h2\" use restricted volume types \"hostPath\", \"nfs\"")),
            ),
            case(
                "many volumes, one type",
                "latest",
                pod(json!({"volumes": [{"name": "a", "hostPath": {"path": "/"}}, {"name": "b", "hostPath": {"path": "/"}}]})),
                Some((REASON, "volumes \"a\", \"b\" use restricted volume type \"hostPath\"")),
            ),
        ]);
        assert_cases(check, &cases);
    }
}
