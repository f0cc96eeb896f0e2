#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}
impl ImageRef {
    pub fn parse(r: &str) -> Result<ImageRef, ImageError> {
        let (rest, digest) = match r.split_once('@') {
            Some((a, b)) => (a, Some(b.to_string())),
            None => (r, None),
        };
        let (name, tag) = match rest.rsplit_once(':') {
            Some((a, b)) if !b.contains('/') => (a, Some(b.to_string())),
            _ => (rest, None),
        };
        if name.chars().any(|c| c.is_uppercase()) {
            return Err(ImageError::Bad(r.into()));
        }
        let (registry, repository) = match name.split_once('/') {
            Some((h, p)) if h.contains('.') || h.contains(':') || h == "localhost" => {
                (h.to_string(), p.to_string())
            }
            _ => (
                "docker.io".to_string(),
                if name.contains('/') {
                    name.to_string()
                } else {
                    format!("library/{name}")
                },
            ),
        };
        Ok(ImageRef {
            registry,
            repository,
            tag,
            digest,
        })
    }
    pub fn is_latest_or_untagged(&self) -> bool {
        self.tag.as_deref() == Some("latest") || (self.tag.is_none() && self.digest.is_none())
    }
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryPattern {
    Any,
    Exact(String),
    Subdomain(String),
}
impl RegistryPattern {
    pub fn parse(p: &str) -> Result<RegistryPattern, ImageError> {
        if p == "*" {
            return Ok(Self::Any);
        }
        if let Some(s) = p.strip_prefix("*.") {
            return Ok(Self::Subdomain(s.into()));
        }
        if p.contains('*') || p.contains('/') {
            return Err(ImageError::Bad(p.into()));
        }
        Ok(Self::Exact(p.into()))
    }
    pub fn matches(&self, h: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(e) => e == h,
            Self::Subdomain(s) => h.ends_with(&format!(".{s}")),
        }
    }
}
impl std::fmt::Display for RegistryPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Any => write!(f, "*"),
            Self::Exact(e) => write!(f, "{e}"),
            Self::Subdomain(s) => write!(f, "*.{s}"),
        }
    }
}
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageError {
    #[error("invalid image reference {0:?}")]
    Bad(String),
}
