//! A bundle's keys must be useless to whoever finds the bundle on a USB stick, in a build
//! folder or in cloud-init user-data: `members[].recipients` seals it with age (X25519 or the
//! host's SSH key) so that only its host, or a break-glass key named beside it, can open it.
//!
//! Parsing recipients and opening a sealed bundle are pure. Sealing draws a fresh file key
//! from the operating system, so the build takes it through [`Sealer`], as it takes keys
//! through [`crate::keys::KeySource`].

use std::io::{Read, Write};

/// The most a sealed file may hold once opened (a bundle's whole unpacked size bounds it).
const MAX_OPENED_BYTES: u64 = crate::unpack::MAX_UNPACKED_BYTES;

/// One recipient a bundle is sealed to, as the topology wrote it.
#[derive(Clone, Debug)]
pub enum Recipient {
    /// An age X25519 recipient, `age1…`.
    X25519(age::x25519::Recipient),
    /// An SSH public key (`ssh-ed25519 …` or `ssh-rsa …`, 2048 bits or more).
    Ssh(age::ssh::Recipient),
}

impl Recipient {
    fn as_age(&self) -> &dyn age::Recipient {
        match self {
            Recipient::X25519(r) => r,
            Recipient::Ssh(r) => r,
        }
    }

    /// The recipient in its canonical text form (an SSH key without its comment).
    pub fn canonical(&self) -> String {
        match self {
            Recipient::X25519(r) => r.to_string(),
            Recipient::Ssh(r) => r.to_string(),
        }
    }
}

/// Parses one recipient: `age1…`, `ssh-ed25519 AAAA… [comment]` or `ssh-rsa AAAA… [comment]`.
pub fn parse_recipient(text: &str) -> Result<Recipient, String> {
    let text = text.trim();
    if text.starts_with("age1") {
        return text
            .parse::<age::x25519::Recipient>()
            .map(Recipient::X25519)
            .map_err(|_| "not a valid age X25519 recipient (age1 followed by 58 bech32 characters)".into());
    }
    if text.starts_with("ssh-") || text.starts_with("ecdsa-") || text.starts_with("sk-") {
        use age::ssh::ParseRecipientKeyError as E;
        return text.parse::<age::ssh::Recipient>().map(Recipient::Ssh).map_err(|e| match e {
            E::RsaModulusTooSmall => {
                "an ssh-rsa key of fewer than 2048 bits, which age refuses as weak".into()
            }
            E::RsaModulusTooLarge => "an ssh-rsa key of more than 4096 bits, which age does not take".into(),
            E::Unsupported(kind) => {
                format!("a key of type {kind}, which age cannot encrypt to (only ssh-ed25519 and ssh-rsa)")
            }
            E::Ignore | E::Invalid(_) => {
                "not a valid SSH public key line (type, base64 key, optional comment)".into()
            }
        });
    }
    Err("neither an age recipient (age1…) nor an SSH public key (ssh-ed25519 … or ssh-rsa …)".into())
}

/// Seals a bundle to its recipients.
pub trait Sealer: Sync {
    /// The age file of `plain`, openable by any one of `to`.
    fn seal(&self, plain: &[u8], to: &[Recipient]) -> Result<Vec<u8>, String>;
}

/// The real sealer: age's v1 format with a file key from the operating system.
pub struct Age;

impl Sealer for Age {
    fn seal(&self, plain: &[u8], to: &[Recipient]) -> Result<Vec<u8>, String> {
        let encryptor = age::Encryptor::with_recipients(to.iter().map(Recipient::as_age))
            .map_err(|e| format!("cannot seal to these recipients: {e}"))?;
        let mut out = Vec::with_capacity(plain.len() + 512);
        let mut w = encryptor.wrap_output(&mut out).map_err(|e| e.to_string())?;
        w.write_all(plain).map_err(|e| e.to_string())?;
        w.finish().map_err(|e| e.to_string())?;
        Ok(out)
    }
}

/// Whether `bytes` are an age file (its header line).
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.starts_with(b"age-encryption.org/v1\n")
}

/// Identities that open sealed bundles: an age identity file (`AGE-SECRET-KEY-1…` lines) or
/// an unencrypted OpenSSH private key (ed25519 or RSA), such as a host key.
pub struct Identities(Vec<Box<dyn age::Identity>>);

impl Identities {
    /// Parses an identity file's text; `name` is used in errors.
    pub fn parse(name: &str, text: &[u8]) -> Result<Identities, String> {
        let looks_ssh = text.starts_with(b"-----BEGIN");
        if looks_ssh {
            let id = age::ssh::Identity::from_buffer(text, Some(name.to_string()))
                .map_err(|e| format!("{name}: not an SSH private key age can use ({e})"))?;
            return match id {
                age::ssh::Identity::Unencrypted(_) => Ok(Identities(vec![Box::new(id)])),
                age::ssh::Identity::Encrypted(_) => Err(format!(
                    "{name}: the SSH key is protected by a passphrase; decrypt the bundle with `age -d -i {name}` (which asks for it) and pass the tarball instead"
                )),
                age::ssh::Identity::Unsupported(_) => Err(format!(
                    "{name}: an SSH key type age cannot decrypt with (use ssh-ed25519 or ssh-rsa)"
                )),
            };
        }
        let file = age::IdentityFile::from_buffer(text)
            .map_err(|e| format!("{name}: not an age identity file ({e})"))?;
        let ids = file.into_identities().map_err(|e| format!("{name}: not an age identity file ({e})"))?;
        if ids.is_empty() {
            return Err(format!("{name}: holds no identity (AGE-SECRET-KEY-1… line or SSH private key)"));
        }
        Ok(Identities(ids))
    }

    /// Adds the identities of another file.
    pub fn extend(&mut self, other: Identities) {
        self.0.extend(other.0);
    }

    /// Opens a sealed file, or says why not.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, String> {
        let d = age::Decryptor::new_buffered(sealed).map_err(|e| format!("not a readable age file: {e}"))?;
        let r = d.decrypt(self.0.iter().map(|i| i.as_ref())).map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => {
                "none of the given identities is a recipient of this bundle".into()
            }
            other => format!("cannot decrypt: {other}"),
        })?;
        let mut plain = Vec::new();
        r.take(MAX_OPENED_BYTES + 1).read_to_end(&mut plain).map_err(|e| format!("cannot decrypt: {e}"))?;
        if plain.len() as u64 > MAX_OPENED_BYTES {
            return Err(format!("it opens to more than {MAX_OPENED_BYTES} bytes, more than any bundle"));
        }
        Ok(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN host@example";

    #[test]
    fn recipients_of_each_kind_parse_and_bad_ones_say_why() {
        let id = age::x25519::Identity::generate();
        let x = parse_recipient(&id.to_public().to_string()).unwrap();
        assert!(matches!(x, Recipient::X25519(_)));
        let s = parse_recipient(ED25519).unwrap();
        assert!(s.canonical().starts_with("ssh-ed25519 AAAAC3") && !s.canonical().contains("host@"));
        assert!(parse_recipient("age1xyz").unwrap_err().contains("bech32"));
        assert!(parse_recipient("ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBHV0v4fXq5nRHkmqQ0P7Hc0yFZzFvFgB9gb0GXXWc0Cd4z2LVPn4GUjqPSlIL8CvrV9p5cVcgaYM2c1m2+P5o6c=").is_err());
        assert!(parse_recipient("ssh-ed25519 AAAA").unwrap_err().contains("SSH public key"));
        assert!(parse_recipient("hello").unwrap_err().contains("neither"));
    }

    #[test]
    fn a_sealed_bundle_opens_with_its_identity_only() {
        let id = age::x25519::Identity::generate();
        let other = age::x25519::Identity::generate();
        let to = [parse_recipient(&id.to_public().to_string()).unwrap()];
        let sealed = Age.seal(b"bundle bytes", &to).unwrap();
        assert!(is_sealed(&sealed));
        let mine = Identities::parse("key.txt", id.to_string().expose_secret().as_bytes()).unwrap();
        assert_eq!(mine.open(&sealed).unwrap(), b"bundle bytes");
        let theirs = Identities::parse("other.txt", other.to_string().expose_secret().as_bytes()).unwrap();
        assert!(theirs.open(&sealed).unwrap_err().contains("none of the given identities"));
        assert!(Identities::parse("x", b"nothing here\n").is_err());
    }

    use age::secrecy::ExposeSecret;
}
