//! Turning TLS on for a running plaintext ensemble, in the three rolls ZooKeeper needs.
//!
//! A member that speaks TLS on its quorum ports cannot talk to one that does not, and a client
//! port that only speaks TLS drops every plaintext application at once. ZooKeeper's own
//! procedure (its administrator's guide: "upgrading existing non-TLS cluster with no downtime")
//! is three rolling restarts, each member restarted once per roll, leader last:
//!
//! 1. [`TlsMode::Unified`]: every port accepts both. The quorum ports take TLS and plaintext
//!    (`portUnification=true`) while members still connect in plaintext (`sslQuorum=false`);
//!    the client port takes TLS and plaintext (`client.portUnification=true`, Netty).
//! 2. [`TlsMode::QuorumTls`]: members connect to each other over TLS (`sslQuorum=true`); they
//!    still accept plaintext from members not yet restarted, and so does the client port.
//! 3. [`TlsMode::Tls`]: plaintext off. The client port serves TLS only; the plaintext port
//!    moves to the pod's loopback (`spec.tls.loopbackPort`), as in a cluster created with TLS.
//!
//! Which mode to render is decided from the world, never remembered: the mode of the pod
//! template that runs ([`MODE_ANNOTATION`], or for a StatefulSet of an earlier release its TLS
//! volume), and whether every member runs that template. The next mode is rendered only once
//! the roll to the current one is complete, so at any moment the members run at most two
//! adjacent modes, and every pair of adjacent modes talks to each other. A pass after an
//! operator restart decides the same.
//!
//! Applications keep working in plaintext through rolls 1 and 2 and may switch to TLS (the CA
//! in `<cluster>-tls`) from the end of roll 1; roll 3 ends plaintext for them.
//!
//! The operator's own connections (four-letter words, reconfiguration) follow the rendered
//! mode: plaintext while it is `Unified` or `QuorumTls` (every member, of either adjacent mode,
//! answers plaintext on the client port), TLS once it is `Tls` (members of `QuorumTls` answer
//! TLS as well).
//!
//! Roll 3 moves each member's plaintext client address from `0.0.0.0:<client>` to
//! `127.0.0.1:<loopbackPort>`, but the committed configuration still names the old one, and
//! ZooKeeper refuses to start when its static and dynamic client addresses differ. The start
//! script therefore writes the static address into its own line of the dynamic file it boots
//! from, and once every member runs TLS the operator commits the new address of each member by
//! reconfiguration (the voters stay the same), see [`crate::membership`].

use k8s_openapi::api::apps::v1::StatefulSet;

/// Pod-template annotation: the TLS mode the members of this template run.
pub const MODE_ANNOTATION: &str = "zookeeper.ensemble.dev/tls-mode";

/// How a member speaks: plaintext, one of the two steps of turning TLS on, or TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsMode {
    /// No TLS anywhere.
    Plaintext,
    /// Quorum and client ports accept TLS and plaintext; members connect in plaintext.
    Unified,
    /// Members connect over TLS; quorum and client ports still accept plaintext.
    QuorumTls,
    /// TLS only (the plaintext client port on the pod's loopback).
    Tls,
}

impl TlsMode {
    /// The annotation value (and the start script's `--tls_transition` value for the two
    /// steps).
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Plaintext => "plaintext",
            TlsMode::Unified => "unified",
            TlsMode::QuorumTls => "quorum-tls",
            TlsMode::Tls => "tls",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            TlsMode::Plaintext,
            TlsMode::Unified,
            TlsMode::QuorumTls,
            TlsMode::Tls,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
    }

    /// The mode after this one on the way to TLS.
    fn next(self) -> Self {
        match self {
            TlsMode::Plaintext => TlsMode::Unified,
            TlsMode::Unified => TlsMode::QuorumTls,
            TlsMode::QuorumTls | TlsMode::Tls => TlsMode::Tls,
        }
    }

    /// Whether the members mount the certificates (every mode but plaintext).
    pub fn has_certificates(self) -> bool {
        self != TlsMode::Plaintext
    }

    /// Whether the client port serves TLS only (the plaintext one on the loopback).
    pub fn tls_only(self) -> bool {
        self == TlsMode::Tls
    }

    /// The roll this mode is reached by, of the three: `Some((n, what))`.
    pub fn roll(self) -> Option<(u8, &'static str)> {
        match self {
            TlsMode::Unified => Some((1, "quorum and client ports accept TLS and plaintext")),
            TlsMode::QuorumTls => Some((2, "members connect to each other over TLS")),
            TlsMode::Tls => Some((3, "plaintext off, clients served over TLS only")),
            TlsMode::Plaintext => None,
        }
    }
}

/// The mode the pod template of `sts` runs: its [`MODE_ANNOTATION`], or for a template without
/// one (an earlier release) TLS when it mounts the TLS Secret, plaintext otherwise.
pub fn template_mode(sts: &StatefulSet) -> TlsMode {
    let Some(template) = sts.spec.as_ref().map(|s| &s.template) else {
        return TlsMode::Plaintext;
    };
    if let Some(mode) = template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(MODE_ANNOTATION))
        .and_then(|v| TlsMode::parse(v))
    {
        return mode;
    }
    let mounts_tls = template
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .is_some_and(|v| {
            v.iter()
                .any(|v| v.name == crate::render::statefulset::TLS_VOLUME)
        });
    if mounts_tls {
        TlsMode::Tls
    } else {
        TlsMode::Plaintext
    }
}

/// The mode to render: TLS off is plaintext; TLS on is TLS for a new cluster and for one that
/// runs TLS, and otherwise the mode that runs, or the next one once every member runs it.
pub fn mode_to_render(tls_enabled: bool, running: Option<&StatefulSet>) -> TlsMode {
    if !tls_enabled {
        return TlsMode::Plaintext;
    }
    let Some(sts) = running else {
        return TlsMode::Tls;
    };
    let current = template_mode(sts);
    if current == TlsMode::Tls {
        TlsMode::Tls
    } else if crate::render::members::template_rolled(sts) {
        current.next()
    } else {
        current
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{StatefulSetSpec, StatefulSetStatus};
    use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec, Volume};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn sts(mode: Option<&str>, tls_volume: bool, updated: i32, ready: i32) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                generation: Some(4),
                ..Default::default()
            },
            spec: Some(StatefulSetSpec {
                replicas: Some(3),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        annotations: mode.map(|m| {
                            [(MODE_ANNOTATION.to_string(), m.to_string())]
                                .into_iter()
                                .collect()
                        }),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        volumes: tls_volume.then(|| {
                            vec![Volume {
                                name: crate::render::statefulset::TLS_VOLUME.to_string(),
                                ..Default::default()
                            }]
                        }),
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            status: Some(StatefulSetStatus {
                observed_generation: Some(4),
                replicas: 3,
                updated_replicas: Some(updated),
                ready_replicas: Some(ready),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn tls_off_renders_plaintext_and_a_new_tls_cluster_starts_with_tls() {
        assert_eq!(mode_to_render(false, None), TlsMode::Plaintext);
        assert_eq!(
            mode_to_render(false, Some(&sts(None, false, 3, 3))),
            TlsMode::Plaintext
        );
        assert_eq!(mode_to_render(true, None), TlsMode::Tls);
    }

    #[test]
    fn templates_of_an_earlier_release_are_read_by_their_tls_volume() {
        assert_eq!(template_mode(&sts(None, false, 3, 3)), TlsMode::Plaintext);
        assert_eq!(template_mode(&sts(None, true, 3, 3)), TlsMode::Tls);
        assert_eq!(
            mode_to_render(true, Some(&sts(None, true, 1, 2))),
            TlsMode::Tls,
            "a TLS cluster stays TLS whatever its roll"
        );
        assert_eq!(
            template_mode(&sts(Some("quorum-tls"), true, 3, 3)),
            TlsMode::QuorumTls
        );
    }

    #[test]
    fn each_step_waits_for_the_roll_to_the_previous_one() {
        // Turned on: the first roll is rendered at once (every member runs plaintext).
        assert_eq!(
            mode_to_render(true, Some(&sts(None, false, 3, 3))),
            TlsMode::Unified
        );
        for (from, to) in [
            ("plaintext", TlsMode::Unified),
            ("unified", TlsMode::QuorumTls),
            ("quorum-tls", TlsMode::Tls),
            ("tls", TlsMode::Tls),
        ] {
            let tls = from != "plaintext";
            assert_eq!(mode_to_render(true, Some(&sts(Some(from), tls, 3, 3))), to);
            // A member not restarted yet, or not Ready: the same mode again.
            let same = TlsMode::parse(from).unwrap();
            assert_eq!(
                mode_to_render(true, Some(&sts(Some(from), tls, 2, 3))),
                same,
                "{from}: a member still runs the template before"
            );
            assert_eq!(
                mode_to_render(true, Some(&sts(Some(from), tls, 3, 2))),
                same,
                "{from}: a member is not Ready"
            );
        }
        // A template the controller has not seen yet is not a complete roll.
        let mut unseen = sts(Some("unified"), true, 3, 3);
        unseen.status.as_mut().unwrap().observed_generation = Some(3);
        assert_eq!(mode_to_render(true, Some(&unseen)), TlsMode::Unified);
    }

    #[test]
    fn modes_name_their_rolls_in_order() {
        let rolls: Vec<u8> = [TlsMode::Unified, TlsMode::QuorumTls, TlsMode::Tls]
            .iter()
            .map(|m| m.roll().unwrap().0)
            .collect();
        assert_eq!(rolls, [1, 2, 3]);
        assert!(TlsMode::Plaintext.roll().is_none());
        assert!(TlsMode::Unified.has_certificates() && !TlsMode::Unified.tls_only());
        assert!(TlsMode::Tls.tls_only() && !TlsMode::Plaintext.has_certificates());
    }
}
