//! Telling systemd a component serves (`Type=notify` units): one `READY=1` datagram to
//! `$NOTIFY_SOCKET`, sent by each binary at the moment it really serves. Without the variable
//! (a terminal, a test, the local rig) nothing happens.

/// Sends `READY=1` to systemd when `NOTIFY_SOCKET` is set; a failure is logged, never fatal
/// (systemd then times the unit out, which says more than a crash would).
pub fn notify_ready() {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    match sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        Ok(()) => tracing::info!(socket = ?socket, "told systemd the service is ready"),
        Err(e) => tracing::warn!(socket = ?socket, error = %e, "sd-notify READY=1 failed"),
    }
}
