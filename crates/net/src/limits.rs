//! The limits of one listener and the file-descriptor budget their defaults come from.

use std::time::Duration;

/// What one listener allows its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections kept open at once; when full, the longest-idle one is closed for a newcomer, and a newcomer
    /// is refused only when none is idle.
    pub max_connections: usize,
    /// The same, for connections from one source address.
    pub max_connections_per_address: usize,
    /// A connection's first request must start within this of its accept, and (HTTP/1) every request head
    /// must be read within this of the proxy starting to wait for it.
    pub header_timeout: Duration,
    /// A connection with no request in flight for this long is closed (HTTP/1 and HTTP/2).
    pub keepalive_timeout: Duration,
    /// The longest pause in a request body (the proxy), or the time a whole body may take (API listeners,
    /// whose bodies are small).
    pub body_timeout: Duration,
    /// The longest a client may leave a response unread (nginx's `send_timeout`): a connection whose response
    /// has made no progress for this long is closed, request in flight or not.
    pub send_timeout: Duration,
}

impl ConnectionLimits {
    pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);
    pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);
    pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);

    /// The default limits of a listener given `connections` for it: a quarter of them for one address.
    pub fn with_connections(connections: usize) -> Self {
        let connections = connections.max(1);
        Self {
            max_connections: connections,
            max_connections_per_address: (connections / 4).max(1),
            header_timeout: Self::DEFAULT_HEADER_TIMEOUT,
            keepalive_timeout: Self::DEFAULT_KEEPALIVE_TIMEOUT,
            body_timeout: Self::DEFAULT_BODY_TIMEOUT,
            send_timeout: Self::DEFAULT_SEND_TIMEOUT,
        }
    }
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self::with_connections(1024)
    }
}

/// How a node's file descriptors are shared between its listeners, in percent of the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerShare {
    /// Each proxied connection may also hold an upstream connection, so it counts twice.
    Proxy,
    Issuer,
    Platform,
    Admin,
    Echo,
}

impl ListenerShare {
    fn percent(self) -> usize {
        match self {
            ListenerShare::Proxy => 45,
            ListenerShare::Issuer => 20,
            ListenerShare::Platform => 10,
            ListenerShare::Admin | ListenerShare::Echo => 5,
        }
    }

    fn descriptors_per_connection(self) -> usize {
        if self == ListenerShare::Proxy { 2 } else { 1 }
    }

    /// The default limits of this listener with `connections` for it. The admin and echo listeners serve
    /// loopback only, where every client has the same address, so a per-address cap would only be a lower cap.
    pub fn limits(self, connections: usize) -> ConnectionLimits {
        let mut limits = ConnectionLimits::with_connections(connections);
        if matches!(self, ListenerShare::Admin | ListenerShare::Echo) {
            limits.max_connections_per_address = limits.max_connections;
        }
        limits
    }
}

/// The file descriptors a node may spend on client connections: its `RLIMIT_NOFILE` less a reserve for the
/// database, log files, connections to IdPs and upstream pools beyond one per client. The shares add up to 85%,
/// so listeners at their default caps never run the process out of descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdBudget {
    descriptors: usize,
}

impl FdBudget {
    const RESERVE: usize = 128;
    /// No listener's default goes above this, however high the limit.
    const MOST_PER_LISTENER: usize = 65_536;

    pub fn from_limit(nofile: u64) -> Self {
        let limit = usize::try_from(nofile).unwrap_or(usize::MAX);
        Self { descriptors: limit.saturating_sub(Self::RESERVE).max(64) }
    }

    /// The current soft `RLIMIT_NOFILE` (1024, the usual default, where it cannot be read).
    pub fn current() -> Self {
        Self::from_limit(rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft))
    }

    /// The connection cap of a process that runs one listener alone (`gatehouse echo`).
    pub fn whole(self) -> usize {
        self.descriptors.min(Self::MOST_PER_LISTENER)
    }

    /// The default connection cap of a listener.
    pub fn connections(self, share: ListenerShare) -> usize {
        let descriptors = self.descriptors * share.percent() / 100;
        (descriptors / share.descriptors_per_connection()).clamp(1, Self::MOST_PER_LISTENER)
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (the soft default of 1024 is far below what a gateway
/// needs, and the hard limit is what the operator allows) and returns the soft limit now in force.
pub fn raise_nofile_limit() -> std::io::Result<u64> {
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    rlimit::increase_nofile_limit(hard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_fit_in_the_limit() {
        for nofile in [256u64, 1024, 20_000, 1 << 20] {
            let budget = FdBudget::from_limit(nofile);
            let shares = [
                ListenerShare::Proxy,
                ListenerShare::Issuer,
                ListenerShare::Platform,
                ListenerShare::Admin,
                ListenerShare::Echo,
            ];
            let used: usize = shares.iter().map(|s| budget.connections(*s) * s.descriptors_per_connection()).sum();
            assert!(used as u64 <= nofile, "{nofile}: {used}");
            assert!(shares.iter().all(|s| budget.connections(*s) >= 1));
        }
        let at_1024 = FdBudget::from_limit(1024);
        assert_eq!(at_1024.connections(ListenerShare::Proxy), 201);
        assert_eq!(at_1024.connections(ListenerShare::Issuer), 179);
        assert_eq!(FdBudget::from_limit(1 << 30).connections(ListenerShare::Proxy), 65_536);
    }

    #[test]
    fn per_address_is_a_quarter() {
        assert_eq!(ConnectionLimits::with_connections(201).max_connections_per_address, 50);
        assert_eq!(ConnectionLimits::with_connections(2).max_connections_per_address, 1);
        assert_eq!(ConnectionLimits::with_connections(0).max_connections, 1);
        assert_eq!(ListenerShare::Issuer.limits(179).max_connections_per_address, 44);
        assert_eq!(ListenerShare::Admin.limits(44).max_connections_per_address, 44, "loopback-only listeners");
    }

    /// The soft limit goes up to the hard one. The test lowers the soft limit of its own process first (which any
    /// process may do), so it shows the raise even where the two start equal.
    #[test]
    fn the_soft_limit_rises_to_the_hard_one() {
        let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
        let lowered = soft.min(hard).saturating_sub(1).max(64);
        rlimit::setrlimit(rlimit::Resource::NOFILE, lowered, hard).unwrap();
        assert_eq!(rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap().0, lowered);
        let raised = raise_nofile_limit().unwrap();
        assert_eq!(raised, hard);
        assert_eq!(rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap(), (hard, hard));
    }
}
