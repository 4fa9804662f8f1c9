//! Kerberized HDFS (docs/DESIGN.md, "Storage"): hdfs-native authenticates with the ticket in
//! the cache `KRB5CCNAME` names, through the system's GSSAPI. This module gets that ticket
//! from a keytab when `warehouse.kerberos_keytab` is set (`kinit -kt`, as Hadoop's own
//! `UserGroupInformation.loginUserFromKeytab` would), and turns a missing or expired ticket
//! into an error that names the principal and the fix.

use std::process::Command;
use std::sync::OnceLock;

/// The principal configured for the warehouse, for error messages.
static PRINCIPAL: OnceLock<String> = OnceLock::new();

/// Remembers `principal` and, with a keytab, gets its ticket into the current cache.
pub fn login(principal: &str, keytab: &str) -> Result<(), String> {
    if principal.is_empty() {
        return Ok(());
    }
    let _ = PRINCIPAL.set(principal.to_string());
    if keytab.is_empty() {
        return Ok(());
    }
    let out = Command::new("kinit")
        .args(["-kt", keytab, principal])
        .output()
        .map_err(|e| format!("cannot run kinit ({e}); install MIT Kerberos' client tools (Debian: krb5-user)"))?;
    if out.status.success() {
        tracing::info!(principal, keytab, "got a Kerberos ticket from the keytab");
        return Ok(());
    }
    Err(format!(
        "kinit -kt {keytab} {principal} failed: {}; check that the keytab holds that principal (klist -kt {keytab}) and that KRB5_CONFIG names its realm's KDC",
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

/// What to do about an authentication failure in `message`, if it is one.
pub fn hint(message: &str) -> Option<String> {
    let lower = message.to_lowercase();
    let kerberos = [
        "gssapi",
        "kerberos",
        "gss failure",
        "sasl",
        "no credentials",
        "ticket expired",
    ]
    .iter()
    .any(|word| lower.contains(word));
    if !kerberos {
        return None;
    }
    let principal = PRINCIPAL.get().map_or("<principal>", String::as_str);
    Some(format!(
        "no valid Kerberos ticket for {principal} (none in the cache KRB5CCNAME names, or it expired): run `kinit -kt <keytab> {principal}`, or set warehouse.kerberos_keytab and warehouse.kerberos_principal so ebroker gets its own"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authentication_failures_get_a_hint_and_others_do_not() {
        let text = hint("GSSAPI error: No Kerberos credentials available").unwrap();
        assert!(text.contains("kinit -kt"), "{text}");
        assert!(hint("connection refused").is_none());
    }
}
