//! The integration suite: one binary, one module per concern. See tests/README.md.

mod support;

mod ansible;
mod backup;
mod bundles;
mod certs;
mod cli;
mod crash;
mod day2;
mod delivery;
mod e2e;
mod golden;
mod host;
mod hostexpiry;
mod install;
mod lifecycle;
mod members;
mod restore;
mod rotation;
mod sealed;
mod snapshots;
mod state;
mod systemd;
mod tidy;
mod upgrade;
mod validation;
mod verify;
