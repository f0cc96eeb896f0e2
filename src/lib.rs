//! waf-admission: holds AI model-serving workloads on AKS to the Azure
//! Well-Architected Framework. The engine (`judge`, `evaluate`) is pure and
//! synchronous; the CLI's `check`, the webhook and the background audit all
//! call it, which is what makes the CLI's verdict the cluster's verdict.

pub mod ai;
pub mod catalog;
pub mod check;
pub mod cluster;
pub mod context;
pub mod decision;
pub mod duration;
pub mod error;
pub mod exception;
pub mod go_base64;
pub mod gpu;
pub mod gpu_memory;
pub mod image;
pub mod inference;
pub mod load;
pub mod log_format;
pub mod log_writer;
pub mod metrics;
pub mod ownership;
pub mod placement;
pub mod policy;
pub mod prices;
pub mod problems;
pub mod provenance;
pub mod quantity;
pub mod release;
pub mod rule_list;
pub mod rules;
pub mod scaler;
pub mod serve;
pub mod state;
pub mod tasks;
pub mod webhook;
pub mod workload;
pub mod yaml;

pub use context::Context;
pub use decision::{Decision, Evaluation, Violation, evaluate, judge};
pub use error::{Error, Result};
pub use policy::compiled::{Policy, PolicySet};
