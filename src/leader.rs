//! Leader election on a coordination.k8s.io/v1 Lease so that only one replica reconciles.
//!
//! The protocol is client-go's: the holder renews `spec.renewTime` every retry period; a
//! candidate takes the Lease over only when it has watched the same record stay unchanged for
//! `leaseDurationSeconds` of *its own* clock (so no two clocks are ever compared); every write
//! is an optimistic `update` carrying the `resourceVersion` that was read, so two candidates
//! can never both win. A leader that cannot renew within the renew deadline gives up, before
//! the lease can expire for the others.
//!
//! kube 5 has no leader election of its own, and the crates that do it either target kube 4 or
//! have no renew deadline (a leader cut off from the API server would keep reconciling while
//! a standby takes over), hence this small module.
//!
//! ```no_run
//! # async fn demo(client: kube::Client) -> Result<(), zookeeper_operator::leader::Error> {
//! use zookeeper_operator::leader::{LeaderElectionConfig, LeaderElector, default_identity};
//! let elector = LeaderElector::new(
//!     client, "operators", "zookeeper-operator-leader", default_identity(),
//!     LeaderElectionConfig::default(),
//! )?;
//! let leadership = elector.run_until_leader().await?;
//! tokio::select! {
//!     _ = async { /* run the controller */ } => {}
//!     reason = leadership.lost() => std::process::exit(1),
//! }
//! leadership.release().await?; // hand over at once instead of after the lease duration
//! # Ok(()) }
//! ```

use std::{
    fmt,
    future::Future,
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};
use tokio::sync::{oneshot, watch};
use tracing::{debug, info, warn};

/// Lease name used when none is configured.
pub const DEFAULT_LEASE_NAME: &str = "zookeeper-operator-leader";

/// Timing of the election; the defaults are client-go's (15 s / 10 s / 2 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderElectionConfig {
    /// How long a standby waits, after the last renewal it saw, before it takes the Lease over.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it gives up leadership.
    pub renew_deadline: Duration,
    /// Pause between two attempts to acquire or renew.
    pub retry_period: Duration,
}

impl Default for LeaderElectionConfig {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl LeaderElectionConfig {
    /// The leader must give up (renew deadline) before the standbys may take over (lease
    /// duration), and must get more than one try within the deadline.
    pub fn validate(&self) -> Result<(), Error> {
        let whole_seconds =
            self.lease_duration.as_secs() >= 1 && self.lease_duration.subsec_nanos() == 0;
        if !whole_seconds {
            return Err(Error::InvalidConfig(format!(
                "lease duration {:?} must be a whole number of seconds (the Lease stores seconds), e.g. 15s",
                self.lease_duration
            )));
        }
        if self.renew_deadline >= self.lease_duration {
            return Err(Error::InvalidConfig(format!(
                "renew deadline {:?} must be shorter than the lease duration {:?}, e.g. 10s and 15s",
                self.renew_deadline, self.lease_duration
            )));
        }
        if self.retry_period.is_zero() || self.retry_period.mul_f32(1.2) >= self.renew_deadline {
            return Err(Error::InvalidConfig(format!(
                "retry period {:?} must be above zero and well below the renew deadline {:?}, e.g. 2s and 10s",
                self.retry_period, self.renew_deadline
            )));
        }
        Ok(())
    }

    fn lease_duration_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid leader election settings: {0}")]
    InvalidConfig(String),
    #[error(
        "failed to read Lease {namespace}/{name}: {source}; check that the operator's Role allows get on leases.coordination.k8s.io in that namespace"
    )]
    GetLease {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to create Lease {namespace}/{name}: {source}")]
    CreateLease {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to update Lease {namespace}/{name}: {source}")]
    UpdateLease {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// The identity this process holds the Lease under: the pod name (`POD_NAME`, set from the
/// downward API), else the host name, else a name made from the process id.
pub fn default_identity() -> String {
    let non_empty = |s: String| {
        let s = s.trim().to_string();
        (!s.is_empty()).then_some(s)
    };
    std::env::var("POD_NAME")
        .ok()
        .and_then(non_empty)
        .or_else(|| std::env::var("HOSTNAME").ok().and_then(non_empty))
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .and_then(non_empty)
        })
        .unwrap_or_else(|| format!("zookeeper-operator-{}", std::process::id()))
}

/// What one look at the Lease tells a candidate to do. Pure: see [`decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// There is no Lease object: create it, holding it.
    Create,
    /// The Lease is free, or its holder stopped renewing it: take it over.
    Acquire,
    /// We hold the Lease: renew it.
    Renew,
    /// Another candidate holds a live Lease.
    Follow {
        holder: String,
        /// Time until it counts as expired if its holder stops renewing now.
        expires_in: Duration,
    },
}

/// Decide what to do with the Lease as it is now.
///
/// `observed_at` is when this candidate first saw the current record (holder, renew time,
/// transitions) unchanged; expiry is measured on the local monotonic clock from there, never
/// by comparing `renewTime` with the local wall clock.
pub fn decide(
    spec: Option<&LeaseSpec>,
    identity: &str,
    observed_at: Instant,
    now: Instant,
) -> Decision {
    let Some(spec) = spec else {
        return Decision::Create;
    };
    match spec.holder_identity.as_deref() {
        None | Some("") => Decision::Acquire,
        Some(holder) if holder == identity => Decision::Renew,
        Some(holder) => {
            let duration =
                Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64);
            let expires_at = observed_at + duration;
            if now >= expires_at {
                Decision::Acquire
            } else {
                Decision::Follow {
                    holder: holder.to_string(),
                    expires_in: expires_at - now,
                }
            }
        }
    }
}

/// The record a candidate last saw, and when it first saw it.
#[derive(Debug, Clone)]
struct Observed {
    spec: Option<LeaseSpec>,
    at: Instant,
}

impl Observed {
    /// Remember `spec`; the clock restarts only when the record changed.
    fn update(&mut self, spec: Option<&LeaseSpec>, now: Instant) {
        if self.spec.as_ref() != spec {
            self.spec = spec.cloned();
            self.at = now;
        }
    }
}

/// The result of one [`LeaderElector::try_acquire_or_renew`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// We hold the Lease (just acquired or renewed).
    Leading,
    /// Another candidate holds a live Lease.
    Following {
        holder: String,
        expires_in: Duration,
    },
    /// Someone else wrote the Lease between our read and our write; try again.
    Conflict,
}

/// One candidate for leadership.
pub struct LeaderElector {
    api: Api<Lease>,
    namespace: String,
    name: String,
    identity: String,
    config: LeaderElectionConfig,
    observed: Observed,
}

impl fmt::Debug for LeaderElector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaderElector")
            .field("lease", &format_args!("{}/{}", self.namespace, self.name))
            .field("identity", &self.identity)
            .field("config", &self.config)
            .finish()
    }
}

impl LeaderElector {
    pub fn new(
        client: Client,
        namespace: impl Into<String>,
        name: impl Into<String>,
        identity: impl Into<String>,
        config: LeaderElectionConfig,
    ) -> Result<Self, Error> {
        config.validate()?;
        let namespace = namespace.into();
        Ok(Self {
            api: Api::namespaced(client, &namespace),
            namespace,
            name: name.into(),
            identity: identity.into(),
            config,
            observed: Observed {
                spec: None,
                at: Instant::now(),
            },
        })
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Read the Lease and, when it is ours or free, write it once.
    pub async fn try_acquire_or_renew(&mut self) -> Result<Attempt, Error> {
        let current = self.get().await?;
        let now = Instant::now();
        self.observed
            .update(current.as_ref().and_then(|l| l.spec.as_ref()), now);
        let decision = decide(
            current.as_ref().and_then(|l| l.spec.as_ref()),
            &self.identity,
            self.observed.at,
            now,
        );
        let written = match decision {
            Decision::Follow { holder, expires_in } => {
                return Ok(Attempt::Following { holder, expires_in });
            }
            Decision::Create => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.acquired_spec(None)),
                };
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(lease) => lease,
                    Err(e) if is_conflict(&e) => return Ok(Attempt::Conflict),
                    Err(source) => return Err(self.err(source, Op::Create)),
                }
            }
            Decision::Acquire | Decision::Renew => {
                // Only reachable with an existing Lease.
                let Some(mut lease) = current else {
                    return Ok(Attempt::Conflict);
                };
                let spec = if decision == Decision::Renew {
                    let mut spec = lease.spec.clone().unwrap_or_default();
                    spec.renew_time = Some(MicroTime(Timestamp::now()));
                    spec.lease_duration_seconds = Some(self.config.lease_duration_seconds());
                    spec
                } else {
                    self.acquired_spec(lease.spec.as_ref())
                };
                lease.spec = Some(spec);
                // metadata.resourceVersion from the read makes this a compare-and-swap.
                match self
                    .api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
                {
                    Ok(lease) => lease,
                    Err(e) if is_conflict(&e) => return Ok(Attempt::Conflict),
                    Err(source) => return Err(self.err(source, Op::Update)),
                }
            }
        };
        self.observed.update(written.spec.as_ref(), Instant::now());
        Ok(Attempt::Leading)
    }

    /// Wait, trying every retry period, until this candidate holds the Lease; then keep
    /// renewing it in a background task.
    pub async fn run_until_leader(mut self) -> Result<Leadership, Error> {
        let mut last_holder = None;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Leading) => {
                    // Also when the Lease already named us: a restarted container keeps its pod name.
                    info!(lease = %self.lease_ref(), identity = %self.identity, "acquired leadership");
                    break;
                }
                Ok(Attempt::Following { holder, expires_in }) => {
                    if last_holder.as_ref() != Some(&holder) {
                        info!(lease = %self.lease_ref(), %holder, ?expires_in, "waiting as standby; another replica leads");
                        last_holder = Some(holder);
                    }
                }
                Ok(Attempt::Conflict) => {
                    debug!(lease = %self.lease_ref(), "lease changed while acquiring, retrying")
                }
                Err(e @ Error::InvalidConfig(_)) => return Err(e),
                // Forbidden or a missing namespace will not fix themselves: say so at once.
                Err(e) if is_permanent(&e) => return Err(e),
                Err(e) => warn!(error = %e, "leader election attempt failed, retrying"),
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
        let (state_tx, state_rx) = watch::channel(LeaderState::Leading);
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(renew_loop(self, state_tx, stop_rx));
        Ok(Leadership {
            state: state_rx,
            stop: stop_tx,
            task,
        })
    }

    /// Give the Lease up if we still hold it, so a standby takes over at its next retry
    /// instead of after the lease duration.
    pub async fn release(&mut self) -> Result<(), Error> {
        let Some(mut lease) = self.get().await? else {
            return Ok(());
        };
        let ours = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            == Some(self.identity.as_str());
        if !ours {
            return Ok(());
        }
        let mut spec = lease.spec.take().unwrap_or_default();
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        lease.spec = Some(spec);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                info!(lease = %self.lease_ref(), identity = %self.identity, "released leadership");
                Ok(())
            }
            // Someone else already wrote it: it is no longer ours to release.
            Err(e) if is_conflict(&e) => Ok(()),
            Err(source) => Err(self.err(source, Op::Update)),
        }
    }

    fn acquired_spec(&self, previous: Option<&LeaseSpec>) -> LeaseSpec {
        let now = MicroTime(Timestamp::now());
        // Count every change of holder, as client-go does (also after a release); creating
        // the Lease is no transition.
        let transitions = previous.map_or(0, |s| {
            let was_ours = s.holder_identity.as_deref() == Some(self.identity.as_str());
            s.lease_transitions.unwrap_or(0) + i32::from(!was_ours)
        });
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.config.lease_duration_seconds()),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    async fn get(&self) -> Result<Option<Lease>, Error> {
        match self.api.get_opt(&self.name).await {
            Ok(lease) => Ok(lease),
            Err(source) => Err(self.err(source, Op::Get)),
        }
    }

    fn lease_ref(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    fn err(&self, source: kube::Error, op: Op) -> Error {
        let (namespace, name) = (self.namespace.clone(), self.name.clone());
        match op {
            Op::Get => Error::GetLease {
                namespace,
                name,
                source,
            },
            Op::Create => Error::CreateLease {
                namespace,
                name,
                source,
            },
            Op::Update => Error::UpdateLease {
                namespace,
                name,
                source,
            },
        }
    }
}

enum Op {
    Get,
    Create,
    Update,
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

fn is_permanent(e: &Error) -> bool {
    let source = match e {
        Error::InvalidConfig(_) => return true,
        Error::GetLease { source, .. }
        | Error::CreateLease { source, .. }
        | Error::UpdateLease { source, .. } => source,
    };
    matches!(source, kube::Error::Api(s) if s.code == 401 || s.code == 403 || (s.code == 404 && s.reason == "NotFound" && s.message.contains("namespaces")))
}

/// Whether this process still leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaderState {
    Leading,
    Lost(LostReason),
}

/// Why leadership ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LostReason {
    /// No renewal succeeded within the renew deadline (API server unreachable or slow).
    RenewDeadlineExceeded { since_last_renewal: Duration },
    /// Another candidate holds the Lease now.
    TakenOver { holder: String },
    /// The renewing task ended without a reason (it panicked or was aborted).
    RenewTaskEnded,
}

impl fmt::Display for LostReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RenewDeadlineExceeded { since_last_renewal } => write!(
                f,
                "could not renew the lease for {since_last_renewal:?}, past the renew deadline"
            ),
            Self::TakenOver { holder } => write!(f, "the lease is now held by {holder}"),
            Self::RenewTaskEnded => write!(f, "the lease renewal task ended"),
        }
    }
}

/// Held while this process leads; a background task renews the Lease.
#[derive(Debug)]
pub struct Leadership {
    state: watch::Receiver<LeaderState>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<LeaderElector>,
}

impl Leadership {
    pub fn is_leader(&self) -> bool {
        *self.state.borrow() == LeaderState::Leading
    }

    /// A receiver that sees [`LeaderState::Lost`] once leadership ends (for metrics or readiness).
    pub fn subscribe(&self) -> watch::Receiver<LeaderState> {
        self.state.clone()
    }

    /// Resolves when leadership is lost. The caller should stop reconciling at once and exit
    /// non-zero, so that Kubernetes restarts the process as a standby.
    pub fn lost(&self) -> impl Future<Output = LostReason> + Send + 'static {
        let mut state = self.state.clone();
        async move {
            loop {
                if let LeaderState::Lost(reason) = &*state.borrow_and_update() {
                    return reason.clone();
                }
                if state.changed().await.is_err() {
                    return match &*state.borrow() {
                        LeaderState::Lost(reason) => reason.clone(),
                        LeaderState::Leading => LostReason::RenewTaskEnded,
                    };
                }
            }
        }
    }

    /// Stop renewing and give the Lease up (call it on shutdown) so that a standby takes
    /// over within one retry period.
    pub async fn release(self) -> Result<(), Error> {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(mut elector) => {
                if *self.state.borrow() == LeaderState::Leading {
                    elector.release().await
                } else {
                    Ok(())
                }
            }
            Err(e) => {
                warn!(error = %e, "lease renewal task failed; the lease expires by itself");
                Ok(())
            }
        }
    }
}

async fn renew_loop(
    mut elector: LeaderElector,
    state: watch::Sender<LeaderState>,
    mut stop: oneshot::Receiver<()>,
) -> LeaderElector {
    let config = elector.config;
    let mut last_renewal = Instant::now();
    loop {
        tokio::select! {
            _ = &mut stop => return elector,
            _ = tokio::time::sleep(config.retry_period) => {}
        }
        let budget = config.renew_deadline.saturating_sub(last_renewal.elapsed());
        match tokio::time::timeout(budget, elector.try_acquire_or_renew()).await {
            Ok(Ok(Attempt::Leading)) => last_renewal = Instant::now(),
            Ok(Ok(Attempt::Following { holder, .. })) => {
                warn!(lease = %elector.lease_ref(), %holder, "lost leadership to another replica");
                state.send_replace(LeaderState::Lost(LostReason::TakenOver { holder }));
                return elector;
            }
            Ok(Ok(Attempt::Conflict)) => {
                debug!(lease = %elector.lease_ref(), "lease changed while renewing, retrying")
            }
            Ok(Err(e)) => warn!(error = %e, "failed to renew the lease, retrying"),
            Err(_) => warn!(lease = %elector.lease_ref(), "renewing the lease timed out"),
        }
        let since_last_renewal = last_renewal.elapsed();
        if since_last_renewal >= config.renew_deadline {
            warn!(lease = %elector.lease_ref(), ?since_last_renewal, "lost leadership: renew deadline exceeded");
            state.send_replace(LeaderState::Lost(LostReason::RenewDeadlineExceeded {
                since_last_renewal,
            }));
            return elector;
        }
    }
}

/// Parse `15s`, `500ms`, `2m` or a bare number of seconds (for command-line flags).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| s.split_at(i));
    let value: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: write it like 15s, 500ms or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("invalid duration unit in {s:?}: use ms, s or m")),
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("invalid duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Leader-election flags of `zookeeper-operator run`; flatten into the CLI with
/// `#[command(flatten)]`.
#[derive(Debug, Clone, clap::Args)]
pub struct LeaderElectionArgs {
    /// Elect a leader among the operator's replicas through a Lease; only the leader reconciles.
    #[arg(long = "leader-elect", env = "ZKOP_LEADER_ELECT")]
    pub enabled: bool,
    /// Name of the Lease.
    #[arg(long = "leader-election-lease-name", env = "ZKOP_LEADER_ELECTION_LEASE_NAME", default_value = DEFAULT_LEASE_NAME)]
    pub lease_name: String,
    /// Namespace of the Lease [default: POD_NAMESPACE, else the client's default namespace].
    #[arg(
        long = "leader-election-namespace",
        env = "ZKOP_LEADER_ELECTION_NAMESPACE"
    )]
    pub namespace: Option<String>,
    /// Identity written into the Lease [default: POD_NAME, else the host name].
    #[arg(
        long = "leader-election-identity",
        env = "ZKOP_LEADER_ELECTION_IDENTITY"
    )]
    pub identity: Option<String>,
    /// How long standbys wait after the last renewal before taking over (whole seconds).
    #[arg(long = "leader-election-lease-duration", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it gives up and exits.
    #[arg(long = "leader-election-renew-deadline", default_value = "10s", value_parser = parse_duration)]
    pub renew_deadline: Duration,
    /// Pause between attempts to acquire or renew the Lease.
    #[arg(long = "leader-election-retry-period", default_value = "2s", value_parser = parse_duration)]
    pub retry_period: Duration,
}

impl LeaderElectionArgs {
    pub fn config(&self) -> LeaderElectionConfig {
        LeaderElectionConfig {
            lease_duration: self.lease_duration,
            renew_deadline: self.renew_deadline,
            retry_period: self.retry_period,
        }
    }

    /// The elector these flags describe, or `None` when leader election is off.
    pub fn elector(&self, client: Client) -> Result<Option<LeaderElector>, Error> {
        if !self.enabled {
            return Ok(None);
        }
        let namespace = self
            .namespace
            .clone()
            .or_else(|| {
                std::env::var("POD_NAMESPACE")
                    .ok()
                    .filter(|s| !s.is_empty())
            })
            .unwrap_or_else(|| client.default_namespace().to_string());
        let identity = self.identity.clone().unwrap_or_else(default_identity);
        LeaderElector::new(
            client,
            namespace,
            self.lease_name.clone(),
            identity,
            self.config(),
        )
        .map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::json;

    fn spec(holder: Option<&str>, duration: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_string),
            lease_duration_seconds: Some(duration),
            renew_time: Some(MicroTime(Timestamp::now())),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn decides_like_client_go() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        assert_eq!(decide(None, "me", t0, t0), Decision::Create);
        assert_eq!(
            decide(Some(&spec(None, 15)), "me", t0, t0),
            Decision::Acquire
        );
        assert_eq!(
            decide(Some(&spec(Some(""), 15)), "me", t0, t0),
            Decision::Acquire
        );
        // Ours: renew even long after (our own renewals are what keeps it alive).
        assert_eq!(
            decide(Some(&spec(Some("me"), 15)), "me", t0, t0 + s(60)),
            Decision::Renew
        );
        // Another live holder.
        assert_eq!(
            decide(Some(&spec(Some("other"), 15)), "me", t0, t0 + s(5)),
            Decision::Follow {
                holder: "other".into(),
                expires_in: s(10)
            }
        );
        // Unchanged for the whole lease duration: expired, take it over.
        assert_eq!(
            decide(Some(&spec(Some("other"), 15)), "me", t0, t0 + s(15)),
            Decision::Acquire
        );
        // Released by its holder (duration 1 s).
        assert_eq!(
            decide(Some(&spec(Some("other"), 1)), "me", t0, t0 + s(1)),
            Decision::Acquire
        );
    }

    #[test]
    fn expiry_restarts_when_the_record_changes() {
        let t0 = Instant::now();
        let mut seen = Observed { spec: None, at: t0 };
        let first = spec(Some("other"), 15);
        seen.update(Some(&first), t0);
        seen.update(Some(&first), t0 + Duration::from_secs(10));
        assert_eq!(seen.at, t0, "an unchanged record keeps its first-seen time");
        let mut renewed = first.clone();
        renewed.renew_time = Some(MicroTime(Timestamp::now() + Duration::from_secs(1)));
        seen.update(Some(&renewed), t0 + Duration::from_secs(12));
        assert_eq!(seen.at, t0 + Duration::from_secs(12));
        // The holder renewed at 12 s, so at 20 s it is still alive even though 20 > 15.
        assert!(matches!(
            decide(
                seen.spec.as_ref(),
                "me",
                seen.at,
                t0 + Duration::from_secs(20)
            ),
            Decision::Follow { .. }
        ));
    }

    #[test]
    fn config_must_let_the_leader_give_up_first() {
        assert!(LeaderElectionConfig::default().validate().is_ok());
        let s = Duration::from_secs;
        let bad = [
            (s(10), s(10), s(2)),
            (s(15), s(10), s(10)),
            (s(15), s(10), Duration::ZERO),
            (Duration::from_millis(15500), s(10), s(2)),
        ];
        for (lease_duration, renew_deadline, retry_period) in bad {
            let c = LeaderElectionConfig {
                lease_duration,
                renew_deadline,
                retry_period,
            };
            assert!(c.validate().is_err(), "{c:?}");
        }
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("3h").is_err());
        assert!(parse_duration("fast").is_err());
    }

    type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

    const LEASE_PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases";

    fn fast() -> LeaderElectionConfig {
        LeaderElectionConfig {
            lease_duration: Duration::from_secs(1),
            renew_deadline: Duration::from_millis(500),
            retry_period: Duration::from_millis(100),
        }
    }

    fn mock_elector(identity: &str, config: LeaderElectionConfig) -> (LeaderElector, Handle) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "ops");
        let elector = LeaderElector::new(client, "ops", "zk-leader", identity, config).unwrap();
        (elector, handle)
    }

    /// Answer the next request with `respond(sent body)`; fails the test when the request is not
    /// `method path...`, or when the operator's RBAC table does not allow it.
    async fn expect(
        handle: &mut Handle,
        method: &str,
        path: &str,
        respond: impl FnOnce(serde_json::Value) -> (u16, serde_json::Value),
    ) -> serde_json::Value {
        let (request, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
            .await
            .unwrap_or_else(|_| panic!("no request within 5 s, expected {method} {path}"))
            .unwrap_or_else(|| panic!("client dropped, expected {method} {path}"));
        let uri = request.uri().to_string();
        assert_eq!(request.method().as_str(), method, "{uri}");
        assert!(uri.starts_with(path), "expected {method} {path}, got {uri}");
        crate::rbac::check_request(method, &uri).unwrap();
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let sent = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        let (code, body) = respond(sent.clone());
        let response = Response::builder()
            .status(code)
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap();
        send.send_response(response);
        sent
    }

    fn status(code: u16, reason: &str) -> (u16, serde_json::Value) {
        let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": format!("test: {reason}"), "reason": reason, "code": code});
        (code, body)
    }

    /// What the API server stores: the object sent, with a new resourceVersion.
    fn stored(mut sent: serde_json::Value, version: &str) -> (u16, serde_json::Value) {
        sent["metadata"]["resourceVersion"] = json!(version);
        (200, sent)
    }

    fn lease(holder: Option<&str>, version: &str) -> serde_json::Value {
        json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "zk-leader", "namespace": "ops", "resourceVersion": version},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "leaseTransitions": 3,
                     "renewTime": "2026-01-01T00:00:00.000000Z"}
        })
    }

    #[tokio::test]
    async fn acquires_a_missing_lease_by_creating_it() {
        let (mut elector, mut handle) = mock_elector("pod-a", LeaderElectionConfig::default());
        let server = tokio::spawn(async move {
            expect(
                &mut handle,
                "GET",
                &format!("{LEASE_PATH}/zk-leader"),
                |_| status(404, "NotFound"),
            )
            .await;
            expect(&mut handle, "POST", LEASE_PATH, |sent| stored(sent, "1")).await
        });
        assert_eq!(
            elector.try_acquire_or_renew().await.unwrap(),
            Attempt::Leading
        );
        let created = server.await.unwrap();
        assert_eq!(created["metadata"]["name"], "zk-leader");
        assert_eq!(created["spec"]["holderIdentity"], "pod-a");
        assert_eq!(created["spec"]["leaseDurationSeconds"], 15);
        assert_eq!(created["spec"]["leaseTransitions"], 0);
    }

    #[tokio::test]
    async fn acquires_an_empty_lease_with_compare_and_swap() {
        let (mut elector, mut handle) = mock_elector("pod-a", LeaderElectionConfig::default());
        let server = tokio::spawn(async move {
            expect(
                &mut handle,
                "GET",
                &format!("{LEASE_PATH}/zk-leader"),
                |_| (200, lease(None, "7")),
            )
            .await;
            expect(
                &mut handle,
                "PUT",
                &format!("{LEASE_PATH}/zk-leader"),
                |sent| stored(sent, "8"),
            )
            .await
        });
        assert_eq!(
            elector.try_acquire_or_renew().await.unwrap(),
            Attempt::Leading
        );
        let written = server.await.unwrap();
        assert_eq!(
            written["metadata"]["resourceVersion"], "7",
            "the update must carry the version it read"
        );
        assert_eq!(written["spec"]["holderIdentity"], "pod-a");
        // Taking a released Lease is a transition too (as in client-go).
        assert_eq!(written["spec"]["leaseTransitions"], 4);
    }

    #[tokio::test]
    async fn refuses_a_lease_held_by_another_live_holder() {
        let (mut elector, mut handle) = mock_elector("pod-a", LeaderElectionConfig::default());
        let server = tokio::spawn(async move {
            expect(
                &mut handle,
                "GET",
                &format!("{LEASE_PATH}/zk-leader"),
                |_| (200, lease(Some("pod-b"), "7")),
            )
            .await;
            handle
        });
        let outcome = elector.try_acquire_or_renew().await.unwrap();
        let Attempt::Following { holder, expires_in } = outcome else {
            panic!("expected to follow, got {outcome:?}");
        };
        assert_eq!(holder, "pod-b");
        assert!(expires_in > Duration::from_secs(14), "{expires_in:?}");
        let mut handle = server.await.unwrap();
        drop(elector);
        // No write was attempted after the read.
        assert!(handle.next_request().await.is_none());
    }

    #[tokio::test]
    async fn a_lost_race_is_a_conflict_not_an_error() {
        let (mut elector, mut handle) = mock_elector("pod-a", LeaderElectionConfig::default());
        let server = tokio::spawn(async move {
            expect(
                &mut handle,
                "GET",
                &format!("{LEASE_PATH}/zk-leader"),
                |_| (200, lease(None, "7")),
            )
            .await;
            expect(
                &mut handle,
                "PUT",
                &format!("{LEASE_PATH}/zk-leader"),
                |_| status(409, "Conflict"),
            )
            .await;
        });
        assert_eq!(
            elector.try_acquire_or_renew().await.unwrap(),
            Attempt::Conflict
        );
        server.await.unwrap();
    }

    #[tokio::test]
    async fn takes_over_an_expired_lease_and_counts_the_transition() {
        let (mut elector, mut handle) = mock_elector("pod-a", fast());
        let server = tokio::spawn(async move {
            expect(
                &mut handle,
                "GET",
                &format!("{LEASE_PATH}/zk-leader"),
                |_| {
                    let mut l = lease(Some("pod-b"), "7");
                    l["spec"]["leaseDurationSeconds"] = json!(1);
                    (200, l)
                },
            )
            .await;
            // The same record again after the lease duration: pod-b stopped renewing.
            expect(
                &mut handle,
                "GET",
                &format!("{LEASE_PATH}/zk-leader"),
                |_| {
                    let mut l = lease(Some("pod-b"), "7");
                    l["spec"]["leaseDurationSeconds"] = json!(1);
                    (200, l)
                },
            )
            .await;
            expect(
                &mut handle,
                "PUT",
                &format!("{LEASE_PATH}/zk-leader"),
                |sent| stored(sent, "8"),
            )
            .await
        });
        assert!(matches!(
            elector.try_acquire_or_renew().await.unwrap(),
            Attempt::Following { .. }
        ));
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(
            elector.try_acquire_or_renew().await.unwrap(),
            Attempt::Leading
        );
        let written = server.await.unwrap();
        assert_eq!(written["spec"]["holderIdentity"], "pod-a");
        assert_eq!(written["spec"]["leaseTransitions"], 4);
    }

    #[tokio::test]
    async fn leads_renews_and_releases_on_shutdown() {
        let (elector, mut handle) = mock_elector("pod-a", fast());
        let server = tokio::spawn(async move {
            expect(
                &mut handle,
                "GET",
                &format!("{LEASE_PATH}/zk-leader"),
                |_| status(404, "NotFound"),
            )
            .await;
            let mut current =
                expect(&mut handle, "POST", LEASE_PATH, |sent| stored(sent, "1")).await;
            current["metadata"]["resourceVersion"] = json!("1");
            // One renewal.
            let answer = current.clone();
            expect(
                &mut handle,
                "GET",
                &format!("{LEASE_PATH}/zk-leader"),
                move |_| (200, answer),
            )
            .await;
            let renewed = expect(
                &mut handle,
                "PUT",
                &format!("{LEASE_PATH}/zk-leader"),
                |sent| stored(sent, "2"),
            )
            .await;
            assert_eq!(renewed["metadata"]["resourceVersion"], "1");
            let mut current = renewed;
            current["metadata"]["resourceVersion"] = json!("2");
            // The release (possibly after more renewals).
            loop {
                let answer = current.clone();
                expect(
                    &mut handle,
                    "GET",
                    &format!("{LEASE_PATH}/zk-leader"),
                    move |_| (200, answer),
                )
                .await;
                let sent = expect(
                    &mut handle,
                    "PUT",
                    &format!("{LEASE_PATH}/zk-leader"),
                    |sent| stored(sent, "3"),
                )
                .await;
                if sent["spec"]["holderIdentity"].is_null() {
                    assert_eq!(sent["spec"]["leaseDurationSeconds"], 1);
                    return;
                }
                current = sent;
            }
        });
        let leadership = elector.run_until_leader().await.unwrap();
        assert!(leadership.is_leader());
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(leadership.is_leader());
        leadership.release().await.unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn loses_leadership_when_another_replica_holds_the_lease() {
        let (elector, mut handle) = mock_elector("pod-a", fast());
        let server = tokio::spawn(async move {
            expect(
                &mut handle,
                "GET",
                &format!("{LEASE_PATH}/zk-leader"),
                |_| (200, lease(None, "7")),
            )
            .await;
            expect(
                &mut handle,
                "PUT",
                &format!("{LEASE_PATH}/zk-leader"),
                |sent| stored(sent, "8"),
            )
            .await;
            expect(
                &mut handle,
                "GET",
                &format!("{LEASE_PATH}/zk-leader"),
                |_| (200, lease(Some("pod-b"), "9")),
            )
            .await;
            handle
        });
        let leadership = elector.run_until_leader().await.unwrap();
        let reason = tokio::time::timeout(Duration::from_secs(5), leadership.lost())
            .await
            .unwrap();
        assert_eq!(
            reason,
            LostReason::TakenOver {
                holder: "pod-b".into()
            }
        );
        assert!(!leadership.is_leader());
        let _handle = server.await.unwrap();
    }

    #[tokio::test]
    async fn gives_up_when_it_cannot_renew_within_the_deadline() {
        let (elector, mut handle) = mock_elector("pod-a", fast());
        let server = tokio::spawn(async move {
            expect(
                &mut handle,
                "GET",
                &format!("{LEASE_PATH}/zk-leader"),
                |_| status(404, "NotFound"),
            )
            .await;
            expect(&mut handle, "POST", LEASE_PATH, |sent| stored(sent, "1")).await;
            // The API server fails every read from now on.
            while let Ok(Some((_, send))) =
                tokio::time::timeout(Duration::from_secs(2), handle.next_request()).await
            {
                let (code, body) = status(503, "ServiceUnavailable");
                send.send_response(
                    Response::builder()
                        .status(code)
                        .body(Body::from(serde_json::to_vec(&body).unwrap()))
                        .unwrap(),
                );
            }
        });
        let started = Instant::now();
        let leadership = elector.run_until_leader().await.unwrap();
        let reason = tokio::time::timeout(Duration::from_secs(5), leadership.lost())
            .await
            .unwrap();
        assert!(
            matches!(reason, LostReason::RenewDeadlineExceeded { .. }),
            "{reason:?}"
        );
        // Given up after the 500 ms deadline, well before the 1 s lease expires for the others.
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        drop(leadership);
        server.await.unwrap();
    }
}
