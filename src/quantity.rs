#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quantity {
    nanos: i128,
}
impl Quantity {
    pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
        let (num, mult): (&str, f64) = if let Some(n) = s.strip_suffix("Gi") {
            (n, 1073741824.0)
        } else if let Some(n) = s.strip_suffix("Mi") {
            (n, 1048576.0)
        } else if let Some(n) = s.strip_suffix('m') {
            (n, 0.001)
        } else {
            (s, 1.0)
        };
        let v: f64 = num.parse().map_err(|_| QuantityError::Bad(s.into()))?;
        Ok(Quantity {
            nanos: (v * mult * 1e9) as i128,
        })
    }
    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }
    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }
}
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QuantityError {
    #[error("invalid quantity {0:?}")]
    Bad(String),
}
