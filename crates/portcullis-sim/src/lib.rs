//! Simulators of the SaaS apps the lifecycle hub provisions.
//!
//! We cannot reach the real Expensify or Stripe from tests or CI, so each
//! simulator reproduces the vendor's contract as `../shared/spec/connectors.md`
//! records it: documented behaviour by default, every inferred behaviour
//! behind a switch. All of them share the machinery in [`common`]: a request
//! log, fault injection, a controllable clock, per-credential rate limiters,
//! and the `/_sim/*` back door that seeds data and changes state behind the
//! hub's back.
//!
//! A simulator runs in-process (tests hold its state directly) or as
//! `portcullis sim <app> --port N`.

pub mod common;
pub mod expensify;
pub mod payhawk;
pub mod scim;
pub mod stripe;
pub mod travelperk;

pub use common::{Fault, FaultRule, LoggedRequest, Running};
