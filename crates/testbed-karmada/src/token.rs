//! What `karmadactl token create --print-register-command` prints, read back.
//!
//! karmadactl (pkg/karmadactl/util/bootstraptoken) prints one line on stdout:
//!
//! ```text
//! karmadactl register 10.123.45.1:32443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:<64 hex>
//! ```
//!
//! The endpoint is the Karmada kubeconfig's `server` without `https://`; several CA pins are joined with
//! commas. The token is `[a-z0-9]{6}.[a-z0-9]{16}`: the part before the dot is its public id, the part after
//! it the secret.

use std::fmt;

/// The parts of a register command. `Debug` never shows the token.
pub(crate) struct RegisterCommand {
    pub endpoint: String,
    pub token: String,
    pub ca_cert_hash: String,
}

impl fmt::Debug for RegisterCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisterCommand")
            .field("endpoint", &self.endpoint)
            .field("token", &"<secret>")
            .field("ca_cert_hash", &self.ca_cert_hash)
            .finish()
    }
}

/// Whether `s` has a bootstrap token's shape: `[a-z0-9]{6}.[a-z0-9]{16}`.
pub(crate) fn is_token(s: &str) -> bool {
    let ok = |part: &str, len: usize| {
        part.len() == len && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    matches!(s.split_once('.'), Some((id, secret)) if ok(id, 6) && ok(secret, 16))
}

/// `text` with everything shaped like a bootstrap token replaced by `<secret:join-token>`: for text that may
/// quote a token before testbed knows which one it is.
///
/// A token is found by its shape alone, wherever it stands: six of `[a-z0-9]` right before a dot and sixteen
/// right after it, whatever touches them (a full stop ending a sentence, an ANSI colour code such as
/// `\x1b[1m` whose final `m` runs into the token's first character, a `v1.` before it, a quote, a URL's
/// `=`). Only those 23 characters are replaced, so the text around them (the colour code too) stays as it
/// was. Masking too much is the safe side: a version (`v1.15.9`), an address, a host name with short labels
/// or a `sha256:` CA pin (no dot in it) has no such run and stays.
pub(crate) fn mask_tokens(text: &str) -> String {
    const ID: usize = 6;
    const SECRET: usize = 16;
    let bytes = text.as_bytes();
    let tokenish = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let run_before = |dot: usize| bytes[..dot].iter().rev().take(ID).take_while(|b| tokenish(**b)).count();
    let run_after = |dot: usize| bytes[dot + 1..].iter().take(SECRET).take_while(|b| tokenish(**b)).count();
    // The byte ranges of every token-shaped run, merged where they overlap (`a.b.c` with both dots fitting).
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for dot in bytes.iter().enumerate().filter(|(_, b)| **b == b'.').map(|(i, _)| i) {
        if run_before(dot) == ID && run_after(dot) == SECRET {
            let (from, to) = (dot - ID, dot + 1 + SECRET);
            match spans.last_mut() {
                Some(last) if last.1 >= from => last.1 = to,
                _ => spans.push((from, to)),
            }
        }
    }
    // Every span is ASCII and starts and ends at ASCII characters, so slicing at its ends is safe.
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (from, to) in spans {
        out.push_str(&text[at..from]);
        out.push_str("<secret:join-token>");
        at = to;
    }
    out.push_str(&text[at..]);
    out
}

fn hash_ok(h: &str) -> bool {
    h.split(',').all(|pin| {
        pin.strip_prefix("sha256:").is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
    })
}

/// Reads the register command from the output; the error says what was missing, never quoting the output.
pub(crate) fn parse_register_command(stdout: &str) -> Result<RegisterCommand, String> {
    let line = stdout
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("register") || l.contains(" register "))
        .ok_or("no `register` command line in its output")?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let flag = |name: &str| -> Option<String> {
        words.iter().enumerate().find_map(|(i, w)| {
            if *w == name {
                words.get(i + 1).map(|v| v.to_string())
            } else {
                w.strip_prefix(name).and_then(|r| r.strip_prefix('=')).map(str::to_owned)
            }
        })
    };
    let at = words.iter().position(|w| *w == "register").unwrap_or(0);
    let endpoint = words.get(at + 1).filter(|w| !w.starts_with("--")).map(|w| w.to_string()).unwrap_or_default();
    let token = flag("--token").ok_or("the register command has no --token")?;
    if !is_token(&token) {
        return Err("its --token is not of the form [a-z0-9]{6}.[a-z0-9]{16}".into());
    }
    let ca_cert_hash =
        flag("--discovery-token-ca-cert-hash").ok_or("the register command has no --discovery-token-ca-cert-hash")?;
    if !hash_ok(&ca_cert_hash) {
        return Err(format!("its --discovery-token-ca-cert-hash {ca_cert_hash:?} is not sha256:<64 hex digits>"));
    }
    Ok(RegisterCommand { endpoint, token, ca_cert_hash })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "sha256:8f3c1b6e4e0f4fd0b1f2f0f6d2b0a1c3e9c8d7b6a5f4e3d2c1b0a9f8e7d6c5b4";

    #[test]
    fn the_printed_register_command_is_read() {
        let out = format!("karmadactl register 10.123.45.1:32443 --token k3x9q2.0a1b2c3d4e5f6g7h --discovery-token-ca-cert-hash {HASH}\n");
        let r = parse_register_command(&out).unwrap();
        assert_eq!(r.endpoint, "10.123.45.1:32443");
        assert_eq!(r.token, "k3x9q2.0a1b2c3d4e5f6g7h");
        assert_eq!(r.ca_cert_hash, HASH);
        assert!(!format!("{r:?}").contains("0a1b2c3d4e5f6g7h"));

        // Two CA pins, `=` flags, and the kubectl plugin's parent command.
        let two = format!("{HASH},{HASH}");
        let out = format!("kubectl karmada register 10.0.0.1:32443 --token=abcdef.0123456789abcdef --discovery-token-ca-cert-hash={two}");
        let r = parse_register_command(&out).unwrap();
        assert_eq!((r.endpoint.as_str(), r.ca_cert_hash.as_str()), ("10.0.0.1:32443", two.as_str()));
    }

    #[test]
    fn what_is_wrong_is_said_without_quoting_the_output() {
        assert!(parse_register_command("abcdef.0123456789abcdef\n").unwrap_err().contains("no `register`"));
        let e = parse_register_command(
            "karmadactl register 1.2.3.4:1 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash md5:00",
        )
        .unwrap_err();
        assert!(!e.contains("0123456789abcdef"), "{e}");
        let e = parse_register_command("karmadactl register 1.2.3.4:1 --token nope").unwrap_err();
        assert!(e.contains("not of the form"), "{e}");
    }

    const TOKEN: &str = "abcdef.0123456789abcdef";

    #[test]
    fn a_token_ending_a_sentence_is_masked() {
        let masked = mask_tokens(&format!("join with {TOKEN}. Then wait."));
        assert_eq!(masked, "join with <secret:join-token>. Then wait.");
    }

    #[test]
    fn a_token_touched_by_an_ansi_colour_code_is_masked() {
        // `\x1b[1m` ends in `m`, a letter a token may hold: it runs into the token's first character.
        let masked = mask_tokens(&format!("--token \x1b[1m{TOKEN}\x1b[0m"));
        assert_eq!(masked, "--token \x1b[1m<secret:join-token>\x1b[0m");
        let masked = mask_tokens(&format!("\x1b[32m{TOKEN}\x1b[39m;\x1b[0m"));
        assert_eq!(masked, "\x1b[32m<secret:join-token>\x1b[39m;\x1b[0m");
    }

    #[test]
    fn a_token_after_a_version_prefix_is_masked() {
        let masked = mask_tokens(&format!("bootstraptoken v1.{TOKEN} created"));
        assert_eq!(masked, "bootstraptoken v1.<secret:join-token> created");
    }

    #[test]
    fn a_ca_pin_and_versions_are_not_masked() {
        let text = "--discovery-token-ca-cert-hash sha256:8f3c1b6e4e0f4fd0b1f2f0f6d2b0a1c3e9c8d7b6a5f4e3d2c1b0a9f8e7d6c5b4. karmadactl v1.15.9, registry.k8s.io/pause:3.10";
        assert_eq!(mask_tokens(text), text);
    }

    /// Text that may stand next to a token: anything, letters, digits and dots that run into it, ANSI colour
    /// codes.
    fn around() -> impl proptest::strategy::Strategy<Value = String> {
        let piece = proptest::prop_oneof![
            proptest::string::string_regex(".{0,8}").unwrap(),
            proptest::string::string_regex("[a-z0-9.]{0,8}").unwrap(),
            proptest::string::string_regex("\x1b\\[[0-9;]{0,5}m").unwrap(),
        ];
        proptest::strategy::Strategy::prop_map(proptest::collection::vec(piece, 0..4), |p| p.concat())
    }

    proptest::proptest! {
        /// Whatever text surrounds a token (any characters: letters and digits touching it, dots, ANSI
        /// escapes, non-ASCII), neither the token nor its secret half is left in the masked text.
        #[test]
        fn a_token_in_any_text_never_survives_masking(
            token in "[a-z0-9]{6}\\.[a-z0-9]{16}",
            before in around(),
            after in around(),
        ) {
            let text = format!("{before}{token}{after}");
            let masked = mask_tokens(&text);
            let secret = &token[7..];
            proptest::prop_assert!(!masked.contains(secret), "{text:?} was masked to {masked:?}");
        }
    }

    #[test]
    fn token_shaped_words_are_masked() {
        assert_eq!(
            mask_tokens("use --token abcdef.0123456789abcdef now; v1.15.9 and 10.0.0.1 stay"),
            "use --token <secret:join-token> now; v1.15.9 and 10.0.0.1 stay"
        );
    }
}
