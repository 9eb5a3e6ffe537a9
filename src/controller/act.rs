//! Act: carry out the plan's decision. At most one eviction per pass, through the Eviction API so
//! the PodDisruptionBudget is honoured, and only after a fresh observation made the same decision;
//! a blocked or stuck rollout and a member pod that cannot run are announced once each with a
//! Warning Event.

use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::policy::v1::Eviction;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, ObjectMeta, Preconditions};
use kube::runtime::events::EventType;

use super::membership::Handoff;
use super::observe::{self, Target};
use super::{ClusterId, Context, Error, withdraw};
use crate::crd::ZookeeperCluster;
use crate::health::{EnsembleView, Ordinal};
use crate::rollout::{self, Act, Decision, Plan, Restart, RestartReason, step_message};
use crate::status::{self, reason};

/// An observation older than this is not acted on: the ensemble may have changed since.
pub const MAX_OBSERVATION_AGE: Duration = Duration::from_secs(5);

/// Carries out `plan.decision` and says what was done; the leader's restart begins with
/// `handoff` when there is one.
pub async fn act(
    ctx: &Context,
    zk: &ZookeeperCluster,
    id: &ClusterId,
    target: &Target,
    plan: &Plan,
    handoff: Option<&Handoff>,
) -> Result<Act, Error> {
    announce(ctx, zk, id, plan).await;
    match &plan.decision {
        Decision::Restart(restart) => {
            let act = restart_member(ctx, id, target, plan, restart, handoff).await?;
            if let Act::EvictionFailed { pod, error } = &act {
                // Not an error of the pass: status must still say what happened.
                ctx.metrics.observe_error("evict");
                if !status::eviction_failed_before(zk.status.as_ref()) {
                    let note = format!("evicting {pod} failed: {error}");
                    let why = reason::EVICTION_FAILED;
                    ctx.publish(id, EventType::Warning, why, "Evict", note)
                        .await;
                }
            }
            Ok(act)
        }
        Decision::Blocked(_) | Decision::Idle | Decision::Wait(_) => Ok(Act::None),
    }
}

/// One Warning Event for each new trouble: a member pod that cannot run, a blocked or a stuck
/// rollout.
pub async fn announce(ctx: &Context, zk: &ZookeeperCluster, id: &ClusterId, plan: &Plan) {
    let previous = zk.status.as_ref();
    for trouble in status::new_pod_troubles(previous, &plan.view) {
        let why = reason::MEMBER_POD_FAILING;
        ctx.publish(id, EventType::Warning, why, "Observe", trouble)
            .await;
    }
    if let Decision::Blocked(blocked) = &plan.decision
        && !status::was_blocked(previous)
    {
        let why = reason::ROLLOUT_BLOCKED;
        ctx.publish(id, EventType::Warning, why, "Plan", blocked.to_string())
            .await;
    }
    if let Some(stuck) = &plan.stuck
        && !status::was_stuck(previous)
    {
        let why = reason::ROLLOUT_STUCK;
        ctx.publish(id, EventType::Warning, why, "Plan", stuck.to_string())
            .await;
    }
}

/// How long a leader that handed its leadership off is kept, at most, until its successor
/// serves every voter left (see [`await_successor`]).
pub const SUCCESSOR_TIMEOUT: Duration = Duration::from_secs(10);
/// After a handoff whose outcome is unknown, how long until members that still follow say the
/// old leader still leads (by then a committed handoff has reached them).
const HANDOFF_SETTLE: Duration = Duration::from_secs(1);
/// How often the other members are asked meanwhile.
const SUCCESSOR_POLL: Duration = Duration::from_millis(100);

/// What is known of a handoff that was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Handed {
    /// The new configuration is committed.
    Committed,
    /// The answer was lost and the configuration could not be read again.
    Unknown,
}

/// Keeps the leader at `old`, which handed its leadership off, until it can go: another member
/// leads and counts every other voter of its configuration synced
/// ([`EnsembleView::successor_serves`]). The handoff's commit reaches the followers one by one;
/// a voter whose copy is still on its way when the old leader stops never activates the new
/// configuration, follows nobody, and the successor (whose quorum needs it) waits out its whole
/// `initLimit` (20 s by default) before an election: the quorum is lost all that time. When the
/// handoff's outcome is unknown, members that still follow after [`HANDOFF_SETTLE`] mean it did
/// not happen: the restart goes on with an election, as without a handoff. At most
/// [`SUCCESSOR_TIMEOUT`]; the others are probed through their ordinal DNS names (the old leader's
/// no longer resolves: it left its Services).
async fn await_successor(
    ctx: &Context,
    id: &ClusterId,
    target: &Target,
    old: Ordinal,
    voters_after: u32,
    handed: Handed,
) {
    let started = Instant::now();
    let pod = crate::names::member_pod(&id.name, old.0);
    loop {
        let probes = observe::probe_all_but(ctx, id, target, old).await;
        let view = EnsembleView::build(&id.name, target.replicas, None, &[], &probes);
        let ms = started.elapsed().as_millis() as u64;
        if view.successor_serves(old, voters_after) {
            let leader = view
                .leader()
                .map(|l| l.name.to_string())
                .unwrap_or_default();
            tracing::info!(pod = %pod, ms, leader, "the successor leads every voter left");
            return;
        }
        if handed == Handed::Unknown
            && started.elapsed() >= HANDOFF_SETTLE
            && view.others_follow(old)
        {
            tracing::info!(pod = %pod, ms, "the others still follow the leader: no handoff (an election follows its restart)");
            return;
        }
        if started.elapsed() >= SUCCESSOR_TIMEOUT {
            tracing::warn!(pod = %pod, ms, leadership = ?view.leadership, sync = ?view.sync, not_serving = ?view.not_serving(), "no successor serves every voter left; restarting the old leader anyway");
            return;
        }
        tokio::time::sleep(SUCCESSOR_POLL).await;
    }
}

/// Observation and eviction are not atomic: the leader can change or a pod be replaced after
/// the probes. So the members are observed again just before the eviction, and the pod is
/// evicted only when that fresh, recent observation makes the same decision, and only if it is
/// still the very pod observed (UID precondition).
async fn restart_member(
    ctx: &Context,
    id: &ClusterId,
    target: &Target,
    plan: &Plan,
    restart: &Restart,
    handoff: Option<&Handoff>,
) -> Result<Act, Error> {
    let pod = restart.pod.to_string();
    let observation = observe::again(ctx, id, target).await?;
    let fresh = rollout::plan(&observation);
    if fresh.decision != plan.decision || !rollout::same_term(&fresh.view, &plan.view) {
        tracing::info!(pod = %pod, now = %fresh.decision, "decision changed on the re-check; not evicting");
        return Ok(Act::Reconsidered(fresh.decision.to_string()));
    }
    let age = SystemTime::now()
        .duration_since(observation.probed_at)
        .unwrap_or_default();
    if age > MAX_OBSERVATION_AGE {
        let why = format!("the re-check took {} s", age.as_secs());
        tracing::info!(pod = %pod, why, "observation too old to act on; not evicting");
        return Ok(Act::Reconsidered(why));
    }
    // A replica that was frozen may resume here after a standby took over: check the Lease.
    if let Some(fence) = &ctx.fence
        && !fence.holds()
    {
        tracing::warn!(pod = %pod, "not evicting: this replica no longer holds the operator's Lease");
        return Ok(Act::Reconsidered(
            "this operator replica no longer holds its Lease".into(),
        ));
    }
    let uid = fresh
        .view
        .member(restart.ordinal)
        .and_then(|m| m.pod.as_ref()?.uid.clone());
    let namespace = &id.namespace;
    if target.in_service {
        // The PodDisruptionBudget is asked first (a dry run), so a refused eviction never takes
        // the member out of its Services.
        if let Err(e) = evict(ctx, namespace, &pod, uid.clone(), true).await {
            return Ok(not_evicted(pod, e));
        }
        if let Err(e) = withdraw::set_in_service(ctx, namespace, &pod, uid.as_deref(), false).await
        {
            tracing::warn!(pod = %pod, error = %e, "cannot take the member out of its Services; not evicting");
            return Ok(Act::EvictionFailed {
                error: format!("taking {pod} out of its Services failed: {e}"),
                pod,
            });
        }
        match withdraw::wait_out_of_services(ctx, id, &pod).await {
            Some(took) => {
                tracing::info!(pod = %pod, ms = took.as_millis() as u64, "member out of its Services")
            }
            None => {
                tracing::info!(pod = %pod, "the Services still list the member; evicting anyway")
            }
        }
    }
    // The leader hands its leadership to a synced follower first: the others follow it at
    // once instead of electing a leader when the old one goes. Its Event is published after
    // the eviction: every moment the old leader serves as an observer, reconnecting clients
    // can land on it and be dropped once more at its SIGTERM.
    let mut handed_off = None;
    if restart.why == RestartReason::Leader
        && let Some(handoff) = handoff
    {
        let started = Instant::now();
        let outcome = match handoff.hand_off(ctx, restart.ordinal).await {
            Ok(Some(now)) => {
                let ms = started.elapsed().as_millis() as u64;
                tracing::info!(pod = %pod, ms, version = %now.version, "leader handed off");
                let note = format!(
                    "{pod} handed its leadership off (configuration version {}, {ms} ms) before its restart; it is a voter again once it serves",
                    now.version
                );
                handed_off = Some(note);
                Some((Handed::Committed, now.voters().len() as u32))
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(pod = %pod, error = %e, "handing the leadership off failed; restarting the leader once the others show whether it still leads");
                Some((Handed::Unknown, target.replicas.saturating_sub(1)))
            }
        };
        if let Some((handed, voters_after)) = outcome {
            await_successor(ctx, id, target, restart.ordinal, voters_after, handed).await;
        }
    }
    let evicted = evict(ctx, namespace, &pod, uid.clone(), false).await;
    if let Some(note) = handed_off {
        ctx.publish(
            id,
            EventType::Normal,
            reason::LEADER_HANDED_OFF,
            "Reconfigure",
            note,
        )
        .await;
    }
    match evicted {
        Ok(_) => {
            ctx.metrics.restarts.get_or_create(&id.labels()).inc();
            tracing::info!(pod = %pod, why = %restart.why, "evicted member for a rolling restart");
            let note = step_message(plan);
            ctx.publish(
                id,
                EventType::Normal,
                reason::RESTARTING_MEMBER,
                "Evict",
                note,
            )
            .await;
            Ok(Act::Evicted(pod))
        }
        Err(e) => {
            if target.in_service
                && let Err(put_back) =
                    withdraw::set_in_service(ctx, namespace, &pod, uid.as_deref(), true).await
            {
                // The next pass puts it back (`withdraw::restore`).
                tracing::warn!(pod = %pod, error = %put_back, "cannot put the member back in its Services yet");
            }
            Ok(not_evicted(pod, e))
        }
    }
}

/// What an eviction the API server did not carry out means for the rollout.
fn not_evicted(pod: String, e: kube::Error) -> Act {
    match e {
        kube::Error::Api(s) if s.code == 429 => {
            tracing::info!(pod = %pod, "eviction refused by the PodDisruptionBudget; will retry");
            Act::EvictionRefused(pod)
        }
        e => {
            tracing::warn!(pod = %pod, error = %e, "eviction failed; will retry");
            Act::EvictionFailed {
                pod,
                error: e.to_string(),
            }
        }
    }
}

/// Evicts `pod` only if it still has `uid`; with `dry_run`, only asks whether the eviction would
/// be allowed. The Eviction object is sent as the API defines it: kube 5's `Api::evict`
/// serializes its options as `delete_options`, which the API server does not read, so a
/// precondition given there would silently not apply.
async fn evict(
    ctx: &Context,
    namespace: &str,
    pod: &str,
    uid: Option<String>,
    dry_run: bool,
) -> Result<(), kube::Error> {
    let eviction = Eviction {
        metadata: ObjectMeta {
            name: Some(pod.to_string()),
            namespace: Some(namespace.to_string()),
            ..ObjectMeta::default()
        },
        delete_options: Some(DeleteOptions {
            preconditions: Some(Preconditions {
                uid,
                resource_version: None,
            }),
            // Both here and in the query, as the API server requires them to agree.
            dry_run: dry_run.then(|| vec!["All".to_string()]),
            ..DeleteOptions::default()
        }),
    };
    let mut body = serde_json::to_value(&eviction).map_err(kube::Error::SerdeError)?;
    body["apiVersion"] = "policy/v1".into();
    body["kind"] = "Eviction".into();
    let query = if dry_run { "?dryRun=All" } else { "" };
    let request = http::Request::post(format!(
        "/api/v1/namespaces/{namespace}/pods/{pod}/eviction{query}"
    ))
    .header(http::header::CONTENT_TYPE, "application/json")
    .body(serde_json::to_vec(&body).map_err(kube::Error::SerdeError)?)
    .map_err(kube::Error::HttpError)?;
    ctx.client
        .request::<serde_json::Value>(request)
        .await
        .map(|_| ())
}
