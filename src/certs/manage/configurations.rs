//! The watches on the webhook configurations and what they have shown:
//! which exist, which are still being listed, and which hold a caBundle.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use futures::StreamExt as _;
use futures::stream::BoxStream;
use kube::api::Api;
use kube::runtime::{WatchStreamExt as _, watcher};
use tracing::warn;

use super::ca_bundle::{Kind, Live, Webhooks};
use crate::certs::fail_closed;

/// A change seen by a configuration watch.
pub(super) enum WatchEvent {
    /// The configuration as it is now (`None`: deleted).
    Object(Option<Live>),
    /// A (re)list starts.
    Listing,
    /// A (re)list ended.
    Listed,
}

pub(super) type Key = (Kind, String);

pub(super) fn watch_configuration(
    client: &kube::Client,
    kind: Kind,
    name: &str,
) -> BoxStream<'static, (Key, WatchEvent)> {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let key = (kind, name.to_owned());
    match kind {
        Kind::Mutating => watch_one(client, config, key, Live::of_mutating),
        Kind::Validating => watch_one(client, config, key, Live::of_validating),
    }
}

/// One webhook configuration's changes, read into [`Live`].
fn watch_one<K>(
    client: &kube::Client,
    config: watcher::Config,
    key: Key,
    read: fn(&K) -> Live,
) -> BoxStream<'static, (Key, WatchEvent)>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + fmt::Debug
        + Send
        + 'static,
{
    watcher(Api::<K>::all(client.clone()), config)
        .default_backoff()
        .filter_map(move |e| {
            let key = key.clone();
            async move { watch_event(e, read).map(|s| (key, s)) }
        })
        .boxed()
}

fn watch_event<K>(
    event: watcher::Result<watcher::Event<K>>,
    read: fn(&K) -> Live,
) -> Option<WatchEvent> {
    match event {
        Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
            Some(WatchEvent::Object(Some(read(&o))))
        }
        Ok(watcher::Event::Delete(_)) => Some(WatchEvent::Object(None)),
        Ok(watcher::Event::Init) => Some(WatchEvent::Listing),
        Ok(watcher::Event::InitDone) => Some(WatchEvent::Listed),
        Err(e) => {
            warn!(error = %e, "webhook configuration watch failed; retrying with backoff");
            None
        }
    }
}

/// One configuration, as its watch has shown it.
enum ConfigurationState {
    /// Its first list has not completed.
    Listing,
    /// It does not exist.
    Absent,
    /// It exists, like this.
    Present(Live),
}

/// What the configuration watches have shown.
#[derive(Default)]
pub(super) struct Configurations {
    states: BTreeMap<Key, ConfigurationState>,
    listing: BTreeSet<Key>,
}

impl Configurations {
    pub(super) fn record(&mut self, key: Key, event: WatchEvent) {
        match event {
            WatchEvent::Listing => {
                self.listing.insert(key.clone());
                self.states
                    .entry(key)
                    .or_insert(ConfigurationState::Listing);
            }
            // Listed without an object: it does not exist.
            WatchEvent::Listed => {
                if self.listing.remove(&key) {
                    self.states.insert(key, ConfigurationState::Absent);
                }
            }
            WatchEvent::Object(object) => {
                self.listing.remove(&key);
                self.states.insert(
                    key,
                    object.map_or(ConfigurationState::Absent, ConfigurationState::Present),
                );
            }
        }
    }

    /// The configurations that exist.
    pub(super) fn present(&self) -> impl Iterator<Item = (&Key, &Live)> {
        self.states.iter().filter_map(|(k, v)| match v {
            ConfigurationState::Present(live) => Some((k, live)),
            _ => None,
        })
    }

    /// Those of `keys` that exist and do not hold `bundle`.
    pub(super) fn lacking(&self, bundle: &str, keys: &[Key]) -> Vec<(Key, Webhooks)> {
        keys.iter()
            .filter_map(|k| self.get(k).map(|live| (k, live)))
            .filter(|(_, live)| !live.webhooks.hold(bundle))
            .map(|(k, live)| (k.clone(), live.webhooks.clone()))
            .collect()
    }

    /// Whether all of `keys` are known and hold `bundle` (or do not exist).
    pub(super) fn all_hold(&self, bundle: &str, keys: &[Key]) -> bool {
        keys.iter().all(|k| match self.states.get(k) {
            None | Some(ConfigurationState::Listing) => false,
            Some(ConfigurationState::Absent) => true,
            Some(ConfigurationState::Present(live)) => live.webhooks.hold(bundle),
        })
    }

    /// Whether every one of `keys` is known not to exist.
    pub(super) fn all_absent(&self, keys: &[Key]) -> bool {
        keys.iter()
            .all(|k| matches!(self.states.get(k), Some(ConfigurationState::Absent)))
    }

    /// The configuration `key`, when it exists.
    pub(super) fn get(&self, key: &Key) -> Option<&Live> {
        match self.states.get(key) {
            Some(ConfigurationState::Present(live)) => Some(live),
            _ => None,
        }
    }

    /// When this install first served, as one of `keys` records it.
    pub(super) fn served(&self, keys: &[Key]) -> Option<String> {
        fail_closed::served_of(
            keys.iter()
                .filter_map(|k| self.get(k))
                .map(|live| &live.state),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_is_confirmed_only_when_every_configuration_is_known_and_holds_it() {
        let hooks = |b: &str| Live {
            webhooks: Webhooks(vec![("w".to_owned(), Some(b.as_bytes().to_vec()))]),
            state: fail_closed::State::default(),
        };
        let m = (Kind::Mutating, "unroot".to_owned());
        let v = (Kind::Validating, "unroot".to_owned());
        let both = [m.clone(), v.clone()];
        let mut c = Configurations::default();
        c.record(m.clone(), WatchEvent::Listing);
        c.record(v.clone(), WatchEvent::Listing);
        assert!(!c.all_hold("X", &both), "still listing");
        c.record(m.clone(), WatchEvent::Object(Some(hooks("old"))));
        c.record(m.clone(), WatchEvent::Listed);
        c.record(v.clone(), WatchEvent::Listed);
        assert!(
            !c.all_hold("X", &both),
            "the mutating one holds another bundle"
        );
        assert_eq!(c.lacking("X", &both).len(), 1);
        c.record(m.clone(), WatchEvent::Object(Some(hooks("X"))));
        assert!(c.all_hold("X", &both), "the validating one does not exist");
        assert!(c.lacking("X", &both).is_empty());
        c.record(v.clone(), WatchEvent::Object(Some(hooks("Y"))));
        assert!(
            !c.all_hold("X", &both),
            "a new one appears with a foreign bundle"
        );
        c.record(m, WatchEvent::Object(None));
        assert_eq!(c.lacking("X", &both).len(), 1);
        assert!(!c.all_absent(&both), "the validating one exists");
        c.record(v, WatchEvent::Object(None));
        assert!(c.all_absent(&both), "both deleted: the recovery command");
        assert!(
            !c.all_absent(&[(Kind::Mutating, "unroot-fail-closed".to_owned())]),
            "one never seen is not known to be gone"
        );
    }
}
