//! Password hashes as RabbitMQ keeps them, so that users exported from RabbitMQ import and
//! log in unchanged, and users exported from Warren import into RabbitMQ.
//!
//! RabbitMQ's scheme (`rabbit_password`): a random 4-byte salt, then
//! `hash(salt | utf8 password)`; the stored value is `salt | digest`, and definitions carry
//! it base64-encoded as `password_hash` with the hash named in `hashing_algorithm`. New
//! passwords are hashed with SHA-256 (RabbitMQ's default since 3.6); SHA-512 and MD5 hashes
//! are accepted on import and checked as they are.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use md5::Md5;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// The length of the salt in front of every digest.
const SALT_LEN: usize = 4;

/// A hash function RabbitMQ names in `hashing_algorithm`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hashing {
    /// `rabbit_password_hashing_sha256`, the default.
    Sha256,
    /// `rabbit_password_hashing_sha512`.
    Sha512,
    /// `rabbit_password_hashing_md5`, RabbitMQ's before 3.6.
    Md5,
}

impl Hashing {
    /// RabbitMQ's module name for it.
    pub fn name(self) -> &'static str {
        match self {
            Hashing::Sha256 => "rabbit_password_hashing_sha256",
            Hashing::Sha512 => "rabbit_password_hashing_sha512",
            Hashing::Md5 => "rabbit_password_hashing_md5",
        }
    }

    /// The hash named `name` (RabbitMQ's module name).
    pub fn from_name(name: &str) -> Option<Hashing> {
        [Hashing::Sha256, Hashing::Sha512, Hashing::Md5]
            .into_iter()
            .find(|h| h.name() == name)
    }

    fn digest(self, salt: &[u8], password: &[u8]) -> Vec<u8> {
        match self {
            Hashing::Sha256 => Sha256::new()
                .chain_update(salt)
                .chain_update(password)
                .finalize()
                .to_vec(),
            Hashing::Sha512 => Sha512::new()
                .chain_update(salt)
                .chain_update(password)
                .finalize()
                .to_vec(),
            Hashing::Md5 => Md5::new()
                .chain_update(salt)
                .chain_update(password)
                .finalize()
                .to_vec(),
        }
    }
}

/// A stored password: the hash function and `salt | digest`. An empty hash is a user
/// without a password, whom no password logs in (RabbitMQ's passwordless users).
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    /// How it was hashed.
    pub hashing: Hashing,
    /// `salt | digest`, or empty.
    pub salted: Vec<u8>,
}

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the hash itself (logs end up in tickets).
        write!(
            f,
            "PasswordHash({}, {} bytes)",
            self.hashing.name(),
            self.salted.len()
        )
    }
}

impl PasswordHash {
    /// `password` hashed with SHA-256 and a fresh random salt.
    pub fn new(password: &str) -> PasswordHash {
        let mut salt = [0u8; SALT_LEN];
        // The salt only has to differ between users; should the OS source fail, a salt from
        // the clock still does.
        if getrandom::getrandom(&mut salt).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            salt = nanos.to_be_bytes();
        }
        PasswordHash::with_salt(Hashing::Sha256, salt, password)
    }

    /// `password` hashed with `hashing` and `salt`.
    pub fn with_salt(hashing: Hashing, salt: [u8; SALT_LEN], password: &str) -> PasswordHash {
        let mut salted = salt.to_vec();
        salted.extend(hashing.digest(&salt, password.as_bytes()));
        PasswordHash { hashing, salted }
    }

    /// No password: nothing logs in with one.
    pub fn none() -> PasswordHash {
        PasswordHash {
            hashing: Hashing::Sha256,
            salted: Vec::new(),
        }
    }

    /// Reads a hash as definitions carry it: base64 `password_hash` and the hash's name
    /// (absent: SHA-256, as RabbitMQ assumes). An empty string is no password.
    pub fn from_definition(
        password_hash: &str,
        hashing_algorithm: Option<&str>,
    ) -> Result<PasswordHash, String> {
        let hashing = match hashing_algorithm {
            None | Some("") => Hashing::Sha256,
            Some(name) => Hashing::from_name(name).ok_or_else(|| {
                format!(
                    "unknown hashing_algorithm '{name}' (Warren reads \
                     rabbit_password_hashing_sha256, _sha512 and _md5)"
                )
            })?,
        };
        let salted = BASE64
            .decode(password_hash.trim())
            .map_err(|e| format!("password_hash is not base64: {e}"))?;
        if !salted.is_empty() && salted.len() <= SALT_LEN {
            return Err("password_hash is too short to hold a salt and a digest".into());
        }
        Ok(PasswordHash { hashing, salted })
    }

    /// The base64 `password_hash` of definitions.
    pub fn to_base64(&self) -> String {
        BASE64.encode(&self.salted)
    }

    /// Whether this user has a password at all.
    pub fn is_set(&self) -> bool {
        !self.salted.is_empty()
    }

    /// Whether `password` is the one hashed, compared in constant time.
    pub fn verify(&self, password: &[u8]) -> bool {
        if self.salted.len() <= SALT_LEN {
            return false;
        }
        let (salt, digest) = self.salted.split_at(SALT_LEN);
        let candidate = self.hashing.digest(salt, password);
        candidate.ct_eq(digest).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_hash_verifies_its_password_only() {
        let hash = PasswordHash::new("s3cret");
        assert!(hash.verify(b"s3cret"));
        assert!(!hash.verify(b"s3cret "));
        assert!(!hash.verify(b""));
        assert_eq!(hash.salted.len(), 4 + 32);
        assert_ne!(
            PasswordHash::new("s3cret").salted,
            hash.salted,
            "salted afresh"
        );
    }

    #[test]
    fn the_layout_is_salt_then_digest_of_salt_and_password() {
        // RabbitMQ's layout: the salt in clear, then sha256(salt | password).
        let hash = PasswordHash::with_salt(Hashing::Sha256, [1, 2, 3, 4], "guest");
        assert_eq!(&hash.salted[..4], &[1, 2, 3, 4]);
        let mut expected = Sha256::new();
        expected.update([1u8, 2, 3, 4]);
        expected.update(b"guest");
        assert_eq!(&hash.salted[4..], expected.finalize().as_slice());
    }

    #[test]
    fn hashes_exported_by_rabbitmq_verify() {
        // Exported from RabbitMQ 3.10 (user `hashref`, password `refpass`, through
        // `/api/users`).
        let sha256 = PasswordHash::from_definition(
            "Wwgxf4aJGnkikYilKM5go5T2eXAgtn5IHMw+JEzF8ncbl1VN",
            Some("rabbit_password_hashing_sha256"),
        )
        .expect("reads");
        assert!(sha256.verify(b"refpass"), "sha256");
        for (algorithm, password) in [(Hashing::Sha512, "p512"), (Hashing::Md5, "pmd5")] {
            let made = PasswordHash::with_salt(algorithm, [9, 8, 7, 6], password);
            let read = PasswordHash::from_definition(&made.to_base64(), Some(algorithm.name()))
                .expect("reads");
            assert!(read.verify(password.as_bytes()), "{algorithm:?}");
            assert!(!read.verify(b"other"), "{algorithm:?}");
        }
    }

    #[test]
    fn bad_definitions_are_refused_with_a_reason() {
        assert!(
            PasswordHash::from_definition("!!", None)
                .expect_err("not base64")
                .contains("base64")
        );
        assert!(
            PasswordHash::from_definition("AAAA", Some("rabbit_password_hashing_bcrypt"))
                .expect_err("unknown")
                .contains("bcrypt")
        );
        let none = PasswordHash::from_definition("", None).expect("no password");
        assert!(!none.is_set());
        assert!(!none.verify(b""), "no password logs in a passwordless user");
    }
}
