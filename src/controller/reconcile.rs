//! One reconcile: validate -> render -> apply -> observe -> plan -> act -> status.

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use tracing::Instrument;

use super::observe::{self, Target};
use super::{ClusterId, Context, Error, act, apply, membership, status as write_status};
use crate::crd::ZookeeperCluster;
use crate::render::render_with;
use crate::rollout;
use crate::status::{self, reason};
use crate::tls::apply::TlsStepError;
use crate::validate::validate;

/// Entry point for the runtime: times the pipeline and records the outcome.
pub async fn reconcile(
    obj: Arc<DeserializeGuard<ZookeeperCluster>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let started = Instant::now();
    ctx.metrics
        .pass_started(&obj.namespace().unwrap_or_default(), &obj.name_any());
    let result = match &obj.0 {
        Ok(zk) => {
            let span = tracing::info_span!("reconcile", cluster = %zk.name_any(), namespace = zk.namespace().unwrap_or_default());
            reconcile_cluster(zk, &ctx).instrument(span).await
        }
        Err(invalid) => malformed(&obj, &invalid.error, &ctx).await,
    };
    ctx.metrics.observe_reconcile(
        started.elapsed(),
        result.as_ref().err().map(Error::category),
    );
    if result.is_ok() {
        ctx.record_success(&obj);
    }
    result
}

/// The pipeline, one step a line.
async fn reconcile_cluster(zk: &ZookeeperCluster, ctx: &Context) -> Result<Action, Error> {
    let id = ClusterId::of(zk)?;
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let mut cluster = match validate(zk) {
        Ok(valid) => valid,
        Err(invalid) => return write_status::hold(ctx, zk, &id, Ok(&invalid), &now).await,
    };
    let uid = zk.uid().unwrap_or_default();
    let tls = match crate::tls::apply::prepare(
        &ctx.client,
        &cluster,
        &id.owner,
        time::OffsetDateTime::now_utc(),
        zk.annotations()
            .get(crate::tls::ROTATE_CA_ANNOTATION)
            .map(String::as_str),
    )
    .await
    {
        Ok(tls) => tls,
        // What the user (or cert-manager) must provide first goes to the status.
        Err(
            e @ (TlsStepError::MissingUserSecret { .. }
            | TlsStepError::CertificateNotIssued { .. }
            | TlsStepError::ApplyCertificate { .. }),
        ) => return write_status::hold(ctx, zk, &id, Err(e.into()), &now).await,
        Err(e) => return Err(e.into()),
    };
    // The operator's own user, before any member could need it; the users' Secret checked
    // (what is wrong with it goes to the status: the user must fix it).
    let client_auth = match crate::client_auth::prepare(
        &ctx.client,
        &cluster,
        membership::operator_login(ctx, &cluster, &uid).as_ref(),
        &id.owner,
    )
    .await
    {
        Ok(hash) => hash,
        Err(e) => return write_status::hold(ctx, zk, &id, Err(e.into()), &now).await,
    };
    // The quorum password, before any member could need it.
    if let Err(e) = crate::quorum_auth::prepare(&ctx.client, &cluster, &id.owner).await {
        return write_status::hold(ctx, zk, &id, Err(e.into()), &now).await;
    }
    // The StatefulSet that runs decides the TLS mode to render (turning TLS on takes three
    // rolls, each begun once the one before is complete).
    let running = observe::statefulset(ctx, &id).await?;
    cluster.tls_mode =
        crate::tls::transition::mode_to_render(cluster.spec.tls.enabled, running.as_ref());
    // The operator speaks TLS to the members once the mode rendered is TLS: until then every
    // member answers plaintext on the client port (and from the last step on, TLS as well).
    let tls_client = tls
        .as_ref()
        .filter(|_| cluster.tls_mode.tls_only())
        .map(|t| t.client.clone());
    let members = membership::prepare(ctx, &cluster, &uid, tls_client.as_ref(), running).await?;
    let mut desired = render_with(
        &cluster,
        &members.members,
        ctx.operator_namespace.as_deref(),
        Some(&id.owner),
    );
    if let Some(tls) = &tls {
        crate::render::statefulset::set_tls_material_hash(
            &mut desired.statefulset,
            &tls.material_hash,
        );
    }
    if let Some(hash) = &client_auth {
        crate::render::statefulset::set_template_hash(
            &mut desired.statefulset,
            crate::client_auth::USERS_HASH_ANNOTATION,
            hash,
        );
    }
    let sts = match apply::apply(ctx, &id, &desired, members.statefulset.as_ref()).await {
        Ok(sts) => sts,
        Err(e) => return write_status::hold(ctx, zk, &id, Err(e), &now).await,
    };
    let target = Target::of(&cluster, &members.members).with_tls(tls_client.clone());
    let (observation, asked) = match observe::observe(ctx, &id, &target, &sts).await {
        Ok(observed) => observed,
        Err(e) => return write_status::unobserved(ctx, zk, &id, e, &now).await,
    };
    let plan = rollout::plan(&observation);
    let scaling = membership::step(
        ctx,
        &id,
        &cluster,
        &uid,
        &members,
        &sts,
        &observation.probes,
        tls_client.as_ref(),
    )
    .await;
    // One change at a time: while the membership changes, nobody is restarted.
    let act = match scaling {
        Some(_) => rollout::Act::None,
        None => {
            let handoff = membership::handoff(ctx, &cluster, &uid, &members, tls_client.as_ref());
            act::act(ctx, zk, &id, &target, &plan, handoff.as_ref()).await?
        }
    };
    ctx.metrics.observe_plan(&id.labels(), &plan);
    let progressing = scaling.as_ref().map(|(s, from, to)| {
        status::Judgement::new(status::PROGRESSING, true, s.reason(*from, *to), s.message())
    });
    let mut status = status::cluster_status(
        zk,
        id.connection_string(&cluster, members.committed.as_ref()),
        &sts,
        &plan,
        &act,
        progressing,
        &now,
    );
    membership::annotate(&mut status, &members, &cluster);
    write_status::write(ctx, zk, &id, &status).await?;
    let mut next = rollout::requeue_after(&plan, &act, ctx.steady_resync);
    if membership::readdress_pending(&cluster, &members) {
        next = next.min(rollout::BUSY_RESYNC);
    }
    let key = format!("{}/{}", id.namespace, id.name);
    let next = match (&scaling, &act) {
        (Some(_), _) => {
            ctx.probe_backoff.clear(&key);
            next.min(membership::RECHECK)
        }
        // No member has a pod with an IP (pods not made yet, or Pending) while nothing is done:
        // no timer could learn anything; the pod made, scheduled or started is a watch event.
        // (Unless the plan waits for time itself: a pod made less than a second ago.)
        (None, rollout::Act::None)
            if next < ctx.steady_resync
                && observe::unanswered(&observation)
                && !asked
                && !matches!(
                    plan.decision,
                    rollout::Decision::Wait(rollout::WaitReason::ObservationOlderThanPod(_))
                ) =>
        {
            ctx.probe_backoff.clear(&key);
            ctx.steady_resync
        }
        // Members that do not answer while nothing is done: each pass that finds what the
        // previous one found waits longer (bounded), since a change that could make them answer
        // arrives as a watch event anyway.
        (None, rollout::Act::None)
            if next < ctx.steady_resync && observe::unanswered(&observation) =>
        {
            let backoff = ctx.probe_backoff.unanswered(
                &key,
                observe::fingerprint(&observation),
                Instant::now(),
            );
            next.max(backoff.min(ctx.steady_resync))
        }
        _ => {
            ctx.probe_backoff.clear(&key);
            next
        }
    };
    Ok(Action::requeue(next))
}

/// A malformed object: say so on it and leave everything else alone.
async fn malformed(
    obj: &DeserializeGuard<ZookeeperCluster>,
    error: &impl std::fmt::Display,
    ctx: &Context,
) -> Result<Action, Error> {
    tracing::warn!(name = %obj.name_any(), namespace = obj.namespace().unwrap_or_default(), error = %error, "object does not match the schema");
    let note = format!(
        "the object does not match the ZookeeperCluster schema ({error}); fix it with kubectl edit"
    );
    ctx.publish_to(
        &obj.object_ref(&()),
        EventType::Warning,
        reason::MALFORMED_OBJECT,
        "Validate",
        note,
    )
    .await;
    Ok(Action::await_change())
}
