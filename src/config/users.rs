//! Named users of a redis listener (`users = [...]`), ACL style, and the check of a client's AUTH.
//!
//! `auth = "secret"` stays the shorthand for the `default` user with every permission. Users are an array of
//! inline tables on the listener (sub-table headers would be dotted tables, which the config reader cannot locate
//! errors in):
//!
//! ```toml
//! users = [
//!   { name = "app", password = "app-secret" },
//!   { name = "reporting", password_sha256 = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8",
//!     permissions = "read-only" },
//! ]
//! ```
//!
//! A password is given in clear (`password`) or as the lowercase or uppercase sha256 hex of it (`password_sha256`,
//! the form redis ACL files use after `#`). Only digests are kept at run time; a client's password is hashed and
//! compared with them. When users are configured and `auth` is not, the `default` user is off: every client must
//! `AUTH username password` (or `HELLO 3 AUTH username password`) first.

use std::fmt;

use sha2::{Digest, Sha256};
use toml::Value;

use super::fields::Field;
use super::ConfigError;

/// What a user may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Permissions {
    /// Every command the listener serves.
    #[default]
    All,
    /// Commands redis flags read-only, and those the proxy answers itself (PING, CLIENT, COMMAND, INFO...): as a
    /// redis user with `+@read +@connection`. Anything else gets `-NOPERM`.
    ReadOnly,
}

impl Permissions {
    pub fn name(self) -> &'static str {
        match self {
            Permissions::All => "all",
            Permissions::ReadOnly => "read-only",
        }
    }
}

/// A user's password as configured.
#[derive(Clone, PartialEq, Eq)]
pub enum UserPassword {
    Clear(String),
    Sha256([u8; 32]),
}

/// Never prints the secret (configs are logged with `{:?}` in places).
impl fmt::Debug for UserPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserPassword::Clear(_) => f.write_str("Clear(\"********\")"),
            UserPassword::Sha256(_) => f.write_str("Sha256(********)"),
        }
    }
}

impl UserPassword {
    pub fn digest(&self) -> [u8; 32] {
        match self {
            UserPassword::Clear(text) => sha256(text.as_bytes()),
            UserPassword::Sha256(digest) => *digest,
        }
    }
}

/// One element of a listener's `users`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserConfig {
    pub name: String,
    pub password: UserPassword,
    pub permissions: Permissions,
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

const USER_KEYS: &[&str] = &["name", "password", "password_sha256", "permissions"];

/// Reads a listener's `users` array (`field` is `listeners.X.users`). Errors are located at the `users` value (the
/// elements' own positions are not kept by the TOML reader) and name the element's key, `users[1].password`.
pub(super) fn parse_users(field: &Field<'_>, has_auth: bool) -> Result<Vec<UserConfig>, ConfigError> {
    let items = field.array()?;
    let at = |key: String, why: String| field.error_at(&field.span(), &key, why);
    let mut users: Vec<UserConfig> = Vec::with_capacity(items.len());
    for (index, value) in items.iter().enumerate() {
        let path = format!("{}[{index}]", field.key());
        let Value::Table(user) = value else {
            return Err(at(path, "expected a table such as { name = \"app\", password = \"...\" }".into()));
        };
        let name = match user.get("name") {
            Some(Value::String(name)) => name,
            _ => return Err(at(format!("{path}.name"), "each user needs a `name` (a string)".into())),
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(at(format!("{path}.name"), "a user name must be printable, without spaces".into()));
        }
        if users.iter().any(|u| &u.name == name) {
            return Err(at(format!("{path}.name"), format!("user {name:?} is given twice")));
        }
        if name == "default" && has_auth {
            return Err(at(path, "the default user's password is already given by `auth`; keep one of the two".into()));
        }
        if let Some(unknown) = user.keys().find(|k| !USER_KEYS.contains(&k.as_str())) {
            return Err(at(
                format!("{path}.{unknown}"),
                format!("unknown key `{unknown}`; expected one of: {}", USER_KEYS.join(", ")),
            ));
        }
        let string = |key: &str| -> Result<Option<&str>, ConfigError> {
            match user.get(key) {
                None => Ok(None),
                Some(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
                Some(Value::String(_)) => Err(at(format!("{path}.{key}"), "must not be empty".into())),
                Some(_) => Err(at(format!("{path}.{key}"), "expected a string".into())),
            }
        };
        let password = match (string("password")?, string("password_sha256")?) {
            (Some(clear), None) => UserPassword::Clear(clear.to_owned()),
            (None, Some(hex)) => UserPassword::Sha256(parse_hex_digest(hex).ok_or_else(|| {
                at(format!("{path}.password_sha256"), "expected 64 hexadecimal digits (a sha256 digest)".into())
            })?),
            (Some(_), Some(_)) => {
                return Err(at(path, "give either `password` or `password_sha256`, not both".into()));
            }
            (None, None) => return Err(at(path, "missing `password` or `password_sha256`".into())),
        };
        let permissions = match string("permissions")? {
            None | Some("all") => Permissions::All,
            Some("read-only") => Permissions::ReadOnly,
            Some(other) => {
                return Err(at(
                    format!("{path}.permissions"),
                    format!("unknown permissions {other:?}; expected \"all\" or \"read-only\""),
                ))
            }
        };
        users.push(UserConfig { name: name.clone(), password, permissions });
    }
    Ok(users)
}

fn parse_hex_digest(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (slot, pair) in out.iter_mut().zip(bytes.chunks(2)) {
        let digit = |c: u8| (c as char).to_digit(16);
        *slot = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(out)
}

/// Who may connect to a listener, as the session checks it: built once per config, shared by its sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// Name, password digest and permissions; `default` first when `auth` is set.
    users: Vec<(Box<[u8]>, [u8; 32], Permissions)>,
}

/// The outcome of a refused AUTH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthRefusal {
    /// Wrong user or password: `-WRONGPASS`.
    WrongPass,
    /// `AUTH password` on a listener without any password: redis' own error for a `nopass` default user.
    NoPasswordConfigured,
}

impl Access {
    pub fn new(auth: Option<&str>, users: &[UserConfig]) -> Access {
        let default = auth.map(|secret| (Box::from(&b"default"[..]), sha256(secret.as_bytes()), Permissions::All));
        let named = users.iter().map(|u| (Box::from(u.name.as_bytes()), u.password.digest(), u.permissions));
        Access { users: default.into_iter().chain(named).collect() }
    }

    /// Whether clients must authenticate before anything else (otherwise they are the open `default` user).
    pub fn required(&self) -> bool {
        !self.users.is_empty()
    }

    /// Checks `AUTH [user] password` (`user` `None` is the default user). An open listener takes any password for
    /// `default`, as redis' `nopass` default user does.
    pub fn authenticate(&self, user: Option<&[u8]>, password: &[u8]) -> Result<Permissions, AuthRefusal> {
        if !self.required() {
            return match user {
                None => Err(AuthRefusal::NoPasswordConfigured),
                Some(b"default") => Ok(Permissions::All),
                Some(_) => Err(AuthRefusal::WrongPass),
            };
        }
        let user = user.unwrap_or(b"default");
        let digest = sha256(password);
        self.users
            .iter()
            .find(|(name, _, _)| &name[..] == user)
            .filter(|(_, expected, _)| constant_time_eq(expected, &digest))
            .map(|&(_, _, permissions)| permissions)
            .ok_or(AuthRefusal::WrongPass)
    }
}

/// Compares digests without an early exit, so timing tells nothing about how much of a guess was right.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, password: UserPassword, permissions: Permissions) -> UserConfig {
        UserConfig { name: name.into(), password, permissions }
    }

    #[test]
    fn open_listener_behaves_as_a_nopass_default_user() {
        let access = Access::new(None, &[]);
        assert!(!access.required());
        assert_eq!(access.authenticate(None, b"x"), Err(AuthRefusal::NoPasswordConfigured));
        assert_eq!(access.authenticate(Some(b"default"), b"anything"), Ok(Permissions::All));
        assert_eq!(access.authenticate(Some(b"bob"), b"x"), Err(AuthRefusal::WrongPass));
    }

    #[test]
    fn auth_is_the_default_user_and_users_add_to_it() {
        // sha256("pw"), as `ACL SETUSER ro #<hex>` takes it.
        let hex = "30c952fab122c3f9759f02a6d95c3758b246b4fee239957b2d4fee46e26170c4";
        assert_eq!(sha256(b"pw"), parse_hex_digest(hex).unwrap());
        let users = [
            user("ro", UserPassword::Sha256(parse_hex_digest(hex).unwrap()), Permissions::ReadOnly),
            user("admin", UserPassword::Clear("root".into()), Permissions::All),
        ];
        let access = Access::new(Some("secret"), &users);
        assert!(access.required());
        assert_eq!(access.authenticate(None, b"secret"), Ok(Permissions::All));
        assert_eq!(access.authenticate(Some(b"default"), b"secret"), Ok(Permissions::All));
        assert_eq!(access.authenticate(Some(b"ro"), b"pw"), Ok(Permissions::ReadOnly));
        assert_eq!(access.authenticate(Some(b"admin"), b"root"), Ok(Permissions::All));
        assert_eq!(access.authenticate(Some(b"ro"), b"root"), Err(AuthRefusal::WrongPass));
        assert_eq!(access.authenticate(None, b"pw"), Err(AuthRefusal::WrongPass));
        assert_eq!(access.authenticate(Some(b"nobody"), b"pw"), Err(AuthRefusal::WrongPass));
        // Users without `auth`: the default user is off.
        let access = Access::new(None, &users);
        assert!(access.required());
        assert_eq!(access.authenticate(None, b""), Err(AuthRefusal::WrongPass));
        assert_eq!(access.authenticate(Some(b"default"), b""), Err(AuthRefusal::WrongPass));
    }

    #[test]
    fn debug_output_hides_passwords() {
        let u = user("a", UserPassword::Clear("hunter2".into()), Permissions::All);
        assert!(!format!("{u:?}").contains("hunter2"));
        let u = user("a", UserPassword::Sha256(sha256(b"x")), Permissions::All);
        assert_eq!(format!("{:?}", u.password), "Sha256(********)");
    }

    #[test]
    fn hex_digests() {
        assert!(parse_hex_digest(&"A".repeat(64)).is_some());
        assert!(parse_hex_digest(&"a".repeat(63)).is_none());
        assert!(parse_hex_digest(&"g".repeat(64)).is_none());
        assert!(parse_hex_digest(&"é".repeat(32)).is_none());
    }
}
