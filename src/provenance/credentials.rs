//! Registry credentials: anonymous, or a user and password read from a
//! `.dockerconfigjson` pull secret. Pure data and parsing: the rules read
//! them into queries, the registry client (`registry.rs`) uses them.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Registry credentials: anonymous, or a user and password from a
/// dockerconfigjson Secret.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum Auth {
    #[default]
    Anonymous,
    Basic {
        username: String,
        password: String,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Anonymous => f.write_str("Anonymous"),
            Auth::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
        }
    }
}

/// The `auths` of a Docker `config.json`, as a `.dockerconfigjson` pull
/// secret or a `--registry-credentials` file holds them: keyed by host
/// (optionally with a scheme or path), each with `auth` (base64
/// `user:password`) or `username` and `password`. Debug shows hosts only.
#[derive(Clone, Default)]
pub struct DockerConfig {
    /// (host, lower-cased with Docker Hub's aliases folded, its credentials).
    entries: Vec<(String, Result<Auth, AuthError>)>,
}

/// A `.dockerconfigjson` that cannot be used; the text names the registry
/// and never the secret.
#[derive(Debug, thiserror::Error)]
pub enum DockerConfigError {
    #[error("not a .dockerconfigjson ({0})")]
    NotJson(#[source] serde_json::Error),
    #[error(transparent)]
    Auth(#[from] AuthError),
}

/// One registry's entry that holds no usable credentials. Kept with the
/// entry (and cloned out of it) so only a lookup of that registry fails.
#[derive(Clone, Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the entry for {host} has neither auth nor username")]
    Empty { host: String },
    #[error("the auth of {registry} is not base64 ({source})")]
    NotBase64 {
        registry: String,
        source: base64::DecodeError,
    },
    #[error("the auth of {registry} is not UTF-8")]
    NotUtf8 {
        registry: String,
        source: std::string::FromUtf8Error,
    },
    #[error("the auth of {registry} is not user:password")]
    NotUserPassword { registry: String },
}

impl std::fmt::Debug for DockerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|(host, _)| host))
            .finish()
    }
}

impl DockerConfig {
    pub fn parse(json: &[u8]) -> Result<DockerConfig, DockerConfigError> {
        #[derive(serde::Deserialize)]
        struct Config {
            #[serde(default)]
            auths: std::collections::BTreeMap<String, Entry>,
        }
        #[derive(serde::Deserialize)]
        struct Entry {
            auth: Option<String>,
            username: Option<String>,
            password: Option<String>,
        }
        let config: Config = serde_json::from_slice(json).map_err(DockerConfigError::NotJson)?;
        let entries = config
            .auths
            .into_iter()
            .map(|(key, entry)| {
                let host = normal_host(&key);
                let auth = match (entry.username, entry.password, entry.auth) {
                    (Some(username), Some(password), _) => Ok(Auth::Basic { username, password }),
                    (_, _, Some(raw)) => decode_auth(&raw, &host),
                    _ => Err(AuthError::Empty { host: host.clone() }),
                };
                (host, auth)
            })
            .collect();
        Ok(DockerConfig { entries })
    }

    /// A credentials file: every entry must be usable, so a mistake stops
    /// the start rather than a lookup.
    pub fn read(path: &std::path::Path) -> crate::Result<DockerConfig> {
        let at = || path.display().to_string();
        let json = std::fs::read(path).map_err(|source| crate::Error::Io {
            path: path.into(),
            source,
        })?;
        let config =
            DockerConfig::parse(&json).map_err(|e| crate::Error::input(at(), e.to_string()))?;
        if let Some((_, Err(e))) = config.entries.iter().find(|(_, a)| a.is_err()) {
            return Err(crate::Error::input(at(), e.to_string()));
        }
        if config.entries.is_empty() {
            return Err(crate::Error::input(at(), "no registry under \"auths\""));
        }
        Ok(config)
    }

    /// The credentials for `registry`; anonymous when no entry names it.
    pub fn auth_for(&self, registry: &str) -> Result<Auth, AuthError> {
        let registry = normal_host(registry);
        self.entries
            .iter()
            .find(|(host, _)| *host == registry)
            .map_or(Ok(Auth::Anonymous), |(_, auth)| auth.clone())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A config key or registry as a host: scheme and path dropped, lower
/// case, Docker Hub's aliases as `docker.io`.
fn normal_host(key: &str) -> String {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = k.split('/').next().unwrap_or(k).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_owned(),
        _ => host,
    }
}

fn decode_auth(raw: &str, registry: &str) -> Result<Auth, AuthError> {
    let decoded = STANDARD
        .decode(raw)
        .map_err(|source| AuthError::NotBase64 {
            registry: registry.to_owned(),
            source,
        })?;
    let text = String::from_utf8(decoded).map_err(|source| AuthError::NotUtf8 {
        registry: registry.to_owned(),
        source,
    })?;
    let (u, p) = text
        .split_once(':')
        .ok_or_else(|| AuthError::NotUserPassword {
            registry: registry.to_owned(),
        })?;
    Ok(Auth::Basic {
        username: u.to_owned(),
        password: p.to_owned(),
    })
}

impl Auth {
    /// The entry for `registry` in a `.dockerconfigjson` (see
    /// [`DockerConfig`]). Anonymous when no entry names the registry.
    pub fn from_docker_config(json: &[u8], registry: &str) -> Result<Auth, DockerConfigError> {
        Ok(DockerConfig::parse(json)?.auth_for(registry)?)
    }
}
