//! Keeping secrets secret (issue 15): which configuration keys hold secrets (passwords,
//! tokens, keys, PEM blocks, SASL settings), masking them wherever configuration is shown
//! (`config show`, `Debug`), and stripping credentials from URLs before a message that
//! names a URL reaches a log line, an error or a state file.

/// Parts of a key name that mark its value as a secret.
const SECRET_MARKERS: [&str; 7] = ["password", "secret", "token", "key", "pem", "sasl", "credential"];

/// What masked values are shown as.
pub const MASK: &str = "****";

/// Whether the value of `key` (a config key or a librdkafka property) is a secret. Keys
/// naming a file that holds one (`token_file`, `password_file`, `tls_key`) are paths, not
/// secrets, and are shown.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    let path = key.ends_with("_file") || key == "tls_key" || key.ends_with(".location");
    !path && SECRET_MARKERS.iter().any(|marker| key.contains(marker))
}

/// Replaces every non-empty secret value in `value` (a TOML tree) by [`MASK`].
pub fn mask_toml(value: &mut toml::Value) {
    if let toml::Value::Table(table) = value {
        for (key, v) in table.iter_mut() {
            match v {
                toml::Value::String(s) if is_secret_key(key) && !s.is_empty() => *s = MASK.to_string(),
                toml::Value::String(_) => {}
                other => mask_toml(other),
            }
        }
    }
}

/// The TOML of `value` with its secrets masked: the `Debug` of every config section that
/// holds one, so `{:?}` never prints a password.
pub fn masked_toml<T: serde::Serialize>(value: &T) -> String {
    match toml::Value::try_from(value) {
        Ok(mut tree) => {
            mask_toml(&mut tree);
            toml::to_string(&tree).unwrap_or_default()
        }
        Err(_) => MASK.to_string(),
    }
}

/// `text` with the password of every `scheme://user:password@host` replaced by [`MASK`]
/// (and a bare `scheme://token@host` user part too).
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("://") {
        let (head, tail) = rest.split_at(start + 3);
        out.push_str(head);
        let authority_end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace() || matches!(c, '"' | '\'' | ','))
            .unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match authority.rfind('@') {
            Some(at) => {
                let user = authority[..at].split_once(':').map_or(MASK, |(user, _)| user);
                out.push_str(user);
                if authority[..at].contains(':') {
                    out.push(':');
                    out.push_str(MASK);
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys_are_recognised_by_pattern() {
        for key in [
            "password",
            "token",
            "ssl.key.pem",
            "sasl.password",
            "sasl.username",
            "secret_access_key",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in [
            "user",
            "host",
            "token_file",
            "password_file",
            "tls_key",
            "ssl.key.location",
            "brokers",
        ] {
            assert!(!is_secret_key(key), "{key}");
        }
    }

    #[test]
    fn nested_secrets_are_masked() {
        let mut v: toml::Value =
            toml::from_str("[db]\npassword = \"hunter2\"\nuser = \"u\"\n[kafka.properties]\n\"ssl.key.pem\" = \"PEM\"")
                .unwrap();
        mask_toml(&mut v);
        let s = toml::to_string(&v).unwrap();
        assert!(
            !s.contains("hunter2") && !s.contains("PEM") && s.contains(MASK) && s.contains("\"u\""),
            "{s}"
        );
    }

    #[test]
    fn credentials_are_stripped_from_urls() {
        assert_eq!(
            redact_urls("cannot reach http://etl:hunter2@ch.bank:8123/?db=x, nor s3://AKIA:wJal@b/p"),
            "cannot reach http://etl:****@ch.bank:8123/?db=x, nor s3://AKIA:****@b/p"
        );
        assert_eq!(redact_urls("hdfs://token@nn:8020/x"), "hdfs://****@nn:8020/x");
        assert_eq!(redact_urls("no url, file:///tmp/x"), "no url, file:///tmp/x");
    }
}
