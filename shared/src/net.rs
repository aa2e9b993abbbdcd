//! Small socket facts every Sluice server needs (the gateway, the edge agent's local
//! proxy, the test servers).

/// Whether an `accept` error is about one client that gave up before it was accepted
/// (the listener is fine: accept the next one at once), as opposed to a listener-wide
/// condition such as running out of file descriptors (back off before retrying).
pub fn peer_gave_up(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionRefused
    )
}
