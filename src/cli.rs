//! Command-line types (clap derive) and nothing else.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Compile one etcd topology into signed, kubeadm-exact bundles, one per etcd host.
#[derive(Debug, Parser)]
#[command(name = "etcdpack", version, about, long_about = None, max_term_width = 100)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented example topology (the kubeadm guide's three hosts)
    Init {
        /// Where to write it; standard output when omitted
        file: Option<PathBuf>,
        /// Overwrite FILE if it exists
        #[arg(long)]
        force: bool,
    },
    /// Validate a topology and list every problem in it
    Check {
        /// The topology file
        topology: PathBuf,
    },
    /// Show what build would do: members, certificates (new, reuse, re-issue) and files
    Plan {
        /// The topology file
        topology: PathBuf,
        /// The last build's output folder, read to tell which hosts get a new install.sh
        #[arg(long, default_value = "dist")]
        out: PathBuf,
        /// State folder [default: <topology stem>.state beside the topology]
        #[arg(long)]
        state: Option<PathBuf>,
        /// Print the plan as JSON
        #[arg(long)]
        json: bool,
        /// Plan `restore --snapshot FILE` instead of a build
        #[arg(long, value_name = "FILE")]
        snapshot: Option<PathBuf>,
        /// With --snapshot: as `restore --embed`
        #[arg(long, requires = "snapshot")]
        embed: bool,
    },
    /// Build one signed bundle per member, and the control-plane bundle, into the output
    /// folder
    Build {
        /// The topology file
        topology: PathBuf,
        /// Output folder, replaced as a whole
        #[arg(long, default_value = "dist")]
        out: PathBuf,
        /// State folder [default: <topology stem>.state beside the topology]
        #[arg(long)]
        state: Option<PathBuf>,
        /// Print the time each phase took (to standard error)
        #[arg(long)]
        timings: bool,
        /// Forget the members the state recorded (nothing deployed yet) and bootstrap the
        /// topology's members as a new cluster
        #[arg(long)]
        reset_members: bool,
        /// Also write delivery files: `cloud-init` (dist/<member>.user-data) or `ansible`
        /// (dist/ansible/); repeat or separate with commas for both
        #[arg(long, value_enum, value_delimiter = ',', value_name = "CHANNEL")]
        emit: Vec<Channel>,
        /// With `--emit cloud-init`: let the CA key's holder's user-data carry the CA key in
        /// clear (refused without it: anything that reads the instance's user-data gets it)
        #[arg(long)]
        user_data_with_ca_key: bool,
    },
    /// Renew leaf certificates: new keys and certificates from the same CA (old ones are
    /// retired, never deleted), then write dist/ as build does; names the hosts that need the
    /// new bundle
    Renew {
        /// The topology file
        topology: PathBuf,
        /// Renew only this member's certificates (repeat for several; `control-plane` for the
        /// control-plane bundle's) [default: every member and the control plane]
        #[arg(long = "member", value_name = "NAME")]
        members: Vec<String>,
        /// Renew only certificates that expire within this window (like 60d or 720h)
        #[arg(long, value_name = "DURATION")]
        within: Option<String>,
        #[command(flatten)]
        output: Rebuild,
    },
    /// Replace the etcd CA without downtime, one phase per call: 1, a new CA trusted beside
    /// the old one; 2, every leaf issued by the new CA; 3, the old CA no longer trusted. Install
    /// each phase's bundles on every host, one at a time, before the next call
    RotateCa {
        /// The topology file
        topology: PathBuf,
        /// In phase 1: go back to the old CA alone (the new CA is retired)
        #[arg(long)]
        abort: bool,
        #[command(flatten)]
        output: Rebuild,
    },
    /// Build restore bundles that bring every member back from an etcd snapshot as one new
    /// cluster (same certificates, a new cluster ID): for a cluster that lost its quorum
    Restore {
        /// The topology file
        topology: PathBuf,
        /// The snapshot (`etcdctl snapshot save`, or etcdpack-snapshot's); it travels beside
        /// the bundles as dist/snapshot.db, its SHA-256 pinned in each
        #[arg(long, value_name = "FILE")]
        snapshot: PathBuf,
        /// Put the snapshot inside every bundle instead of beside them
        #[arg(long)]
        embed: bool,
        #[command(flatten)]
        output: Rebuild,
    },
    /// List when each certificate expires (from a topology's state folder, a state folder or
    /// bundles); exit 1 when any expires within the window
    Expiry {
        /// A topology file (its state folder is read), a state folder, or bundles (.tar.gz, .tar.gz.age)
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// The window: exit 1 when a certificate (the CA included) expires within it
        #[arg(long, default_value = "30d")]
        within: String,
        /// Print a JSON array instead of the table
        #[arg(long)]
        json: bool,
        /// The pinned signing key, for bundles [default: signing-key.pub beside each bundle]
        #[arg(long)]
        pubkey: Option<PathBuf>,
        /// A key that opens sealed bundles (.tar.gz.age): an age identity file or an unencrypted
        /// SSH private key such as the host's /etc/ssh/ssh_host_ed25519_key (repeatable)
        #[arg(long = "identity", short = 'i', value_name = "FILE")]
        identity: Vec<PathBuf>,
    },
    /// Check bundles: signature, digests, certificate chain, SANs, expiry, key placement,
    /// and that several bundles belong to one cluster
    Verify {
        /// Bundles (.tar.gz, or sealed .tar.gz.age); each one's signature is read from BUNDLE.sig
        #[arg(required = true)]
        bundles: Vec<PathBuf>,
        /// The pinned signing key [default: signing-key.pub beside each bundle, which proves
        /// only that the bundle matches its folder]
        #[arg(long)]
        pubkey: Option<PathBuf>,
        /// A key that opens sealed bundles (.tar.gz.age): an age identity file or an unencrypted
        /// SSH private key such as the host's /etc/ssh/ssh_host_ed25519_key (repeatable)
        #[arg(long = "identity", short = 'i', value_name = "FILE")]
        identity: Vec<PathBuf>,
    },
    /// Show bundles as the guide's file trees, with certificate summaries (after checking
    /// each one's signature)
    Inspect {
        /// Bundles (.tar.gz, or sealed .tar.gz.age); each one's signature is read from BUNDLE.sig
        #[arg(required = true)]
        bundles: Vec<PathBuf>,
        /// The pinned signing key [default: signing-key.pub beside each bundle]
        #[arg(long)]
        pubkey: Option<PathBuf>,
        /// A key that opens sealed bundles (.tar.gz.age): an age identity file or an unencrypted
        /// SSH private key such as the host's /etc/ssh/ssh_host_ed25519_key (repeatable)
        #[arg(long = "identity", short = 'i', value_name = "FILE")]
        identity: Vec<PathBuf>,
    },
}

/// Where a command that builds again (`renew`, `rotate-ca`) writes, as build does.
#[derive(Args, Debug)]
pub struct Rebuild {
    /// Output folder, replaced as a whole
    #[arg(long, default_value = "dist")]
    pub out: PathBuf,
    /// State folder [default: <topology stem>.state beside the topology]
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Also write delivery files, as build does
    #[arg(long, value_enum, value_delimiter = ',', value_name = "CHANNEL")]
    pub emit: Vec<Channel>,
    /// As build's
    #[arg(long)]
    pub user_data_with_ca_key: bool,
}

/// A delivery channel `--emit` writes files for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Channel {
    // dist/<member>.user-data: #cloud-config that writes the signed bundle and installs it.
    #[allow(missing_docs)]
    CloudInit,
    // dist/ansible/: inventory.yml, site.yml and install-bundle.yml.
    #[allow(missing_docs)]
    Ansible,
}

/// What the channels ask for.
pub fn emit_of(channels: &[Channel], user_data_with_ca_key: bool) -> etcdpack::emit::Emit {
    etcdpack::emit::Emit {
        cloud_init: channels.contains(&Channel::CloudInit),
        ansible: channels.contains(&Channel::Ansible),
        user_data_with_ca_key,
    }
}
