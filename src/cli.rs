//! Command-line flags of `zookeeper-operator run` for the Lease election. The flag names and
//! their environment variables are what the Helm chart passes; keep them stable.

use std::time::Duration;

use kube::Client;
use zookeeper_operator::election::{
    DEFAULT_LEASE_NAME, ElectionConfig, Error, LeaseElector, default_identity,
};

/// Parse `15s`, `500ms`, `2m` or a bare number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
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

/// Lease election flags; flatten into the `run` arguments with `#[command(flatten)]`.
#[derive(Debug, Clone, clap::Args)]
pub struct ElectionArgs {
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

impl ElectionArgs {
    /// The elector these flags describe, or `None` when the election is off.
    pub fn elector(&self, client: Client) -> Result<Option<LeaseElector>, Error> {
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
        let config = ElectionConfig {
            lease_duration: self.lease_duration,
            renew_deadline: self.renew_deadline,
            retry_period: self.retry_period,
        };
        LeaseElector::new(client, namespace, self.lease_name.clone(), identity, config).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("3h").is_err());
        assert!(parse_duration("fast").is_err());
    }
}
