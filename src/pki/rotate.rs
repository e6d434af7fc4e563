//! CA rotation without downtime: etcd reads its trust file only at start but its leaf
//! certificates on every connection, so a CA is replaced in three phases, each a normal set of
//! bundles installed one host at a time: trust both CAs (the old one signing), then every leaf
//! from the new CA (both still trusted), then trust the new CA alone.

use super::*;

/// What `etcdpack rotate-ca` asks of the rotation recorded in the state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaStep {
    /// Start a rotation, or take it to its next phase (the third ends it).
    Advance,
    /// Go back to the old CA alone (only in phase 1).
    Abort,
}

/// The state as the rest of the build sees it after one step, and the moves and new files
/// that make the state folder match.
pub struct Rotated {
    /// The state after the step.
    pub state: State,
    /// The CA files this step creates or moves (leaves are `issue`'s), and its record.
    pub update: StateUpdate,
    /// What the step did, for the report.
    pub said: String,
    /// Whether every leaf is to be issued again from the (new) CA: the step into phase 2.
    pub reissue_all: bool,
}

/// Why a step cannot be taken in the recorded phase, if it cannot.
pub fn refusal(phase: Option<u8>, step: CaStep, has_ca: bool) -> Option<String> {
    match (step, phase) {
        _ if !has_ca => Some(
            "there is no CA to rotate yet\n  help: run `etcdpack build TOPOLOGY` first".into(),
        ),
        (CaStep::Abort, None) => Some(
            "no CA rotation is in progress, so there is nothing to abort\n  help: `etcdpack plan TOPOLOGY` shows the state's CA".into(),
        ),
        (CaStep::Abort, Some(2)) => Some(
            "the CA rotation is in phase 2: every leaf is issued by the new CA, so the way out is forward\n  help: install the phase-2 bundles everywhere, then run `etcdpack rotate-ca TOPOLOGY` once more to drop the old CA".into(),
        ),
        (_, Some(p)) if !(1..=2).contains(&p) => {
            Some(format!("state.json records CA rotation phase {p}, which this release does not know"))
        }
        _ => None,
    }
}

/// Takes one step of the rotation recorded in `state` (after [`refusal`] found none).
pub fn rotate(
    plan: &Plan,
    state: &State,
    step: CaStep,
    now: i64,
    keys: &dyn KeySource,
) -> Result<Rotated, IssueError> {
    let mut next = state.clone();
    let mut update = StateUpdate::default();
    let (ca_cert, ca_key) = match (&state.ca_cert, &state.ca_key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => return Err(IssueError::Corrupt("the CA certificate or key is missing".into())),
    };
    let old_serial = serial_of(&ca_cert, state::CA_CERT)?;
    let mut reissue_all = false;
    let said = match (step, state.record.ca_rotation) {
        (CaStep::Advance, None) => {
            let key = keys.key(plan.key_algorithm, "etcd-ca-next");
            let params = issue::ca_params(
                plan.behaviour.key_id,
                &key,
                keys.serial("etcd-ca-next"),
                now - BACKDATE_SECS,
                now + plan.ca_validity_secs as i64,
            )?;
            let cert = params
                .self_signed(&key.to_rcgen())
                .map_err(|e| IssueError::Crypto { what: "the new etcd-ca".into(), why: e.to_string() })?;
            let cert_pem = pem_encode("CERTIFICATE", cert.der());
            let key_pem = key.to_kubeadm_pem();
            update.store_pair(state::CA_NEXT_KEY, &key_pem, state::CA_NEXT_CERT, &cert_pem);
            let new_serial = serial_of(&cert_pem, "the new CA")?;
            next.ca_next = Some(state::StoredLeaf { cert_pem, key_pem });
            next.record.ca_rotation = Some(1);
            format!(
                "CA rotation phase 1 of 3: a new CA (serial {new_serial}) is trusted beside the CA (serial {old_serial}), which still signs; leaves unchanged"
            )
        }
        (CaStep::Advance, Some(1)) => {
            let new = state.ca_next.clone().ok_or_else(|| {
                IssueError::Corrupt(format!("CA rotation phase 1 without {}", state::CA_NEXT_CERT))
            })?;
            update.retire.extend([
                (state::CA_CERT.to_string(), state::CA_PREVIOUS_CERT.to_string()),
                (state::CA_KEY.to_string(), state::CA_PREVIOUS_KEY.to_string()),
                (state::CA_NEXT_CERT.to_string(), state::CA_CERT.to_string()),
                (state::CA_NEXT_KEY.to_string(), state::CA_KEY.to_string()),
            ]);
            let new_serial = serial_of(&new.cert_pem, state::CA_NEXT_CERT)?;
            next.ca_previous = Some(state::StoredLeaf { cert_pem: ca_cert, key_pem: ca_key });
            next.ca_cert = Some(new.cert_pem);
            next.ca_key = Some(new.key_pem);
            next.ca_next = None;
            next.record.ca_rotation = Some(2);
            reissue_all = true;
            format!(
                "CA rotation phase 2 of 3: every leaf is issued again by the new CA (serial {new_serial}), which now comes first in ca.crt; the old CA (serial {old_serial}) is still trusted"
            )
        }
        (CaStep::Advance, Some(_)) => {
            let previous = (state::CA_PREVIOUS_CERT, state::CA_PREVIOUS_KEY);
            let serial = retire(&mut update, state.ca_previous.as_ref(), previous, 2)?;
            next.ca_previous = None;
            next.record.ca_rotation = None;
            format!(
                "CA rotation phase 3 of 3: only the CA (serial {old_serial}) is trusted; the old CA (serial {serial}) is retired"
            )
        }
        (CaStep::Abort, _) => {
            let serial =
                retire(&mut update, state.ca_next.as_ref(), (state::CA_NEXT_CERT, state::CA_NEXT_KEY), 1)?;
            next.ca_next = None;
            next.record.ca_rotation = None;
            format!(
                "CA rotation aborted: the CA (serial {old_serial}) is trusted alone again; the new CA (serial {serial}) is retired"
            )
        }
    };
    update.record = Some(next.record.clone());
    Ok(Rotated { state: next, update, said, reissue_all })
}

/// The serial of a CA certificate of the state folder (`what` names its file).
fn serial_of(pem: &str, what: &str) -> Result<String, IssueError> {
    x509::parse_pem(pem).map(|i| i.serial_hex).map_err(|e| IssueError::Corrupt(format!("{what}: {e}")))
}

/// Moves the CA that phase `phase` of a rotation keeps beside the signing one (its
/// certificate and key at `cert`, `key`) into `retired/ca/`, named by its serial, which it
/// returns.
fn retire(
    update: &mut StateUpdate,
    stored: Option<&state::StoredLeaf>,
    (cert, key): (&str, &str),
    phase: u8,
) -> Result<String, IssueError> {
    let ca =
        stored.ok_or_else(|| IssueError::Corrupt(format!("CA rotation phase {phase} without {cert}")))?;
    let serial = serial_of(&ca.cert_pem, cert)?;
    for (from, ext) in [(cert, "crt"), (key, "key")] {
        update.retire.push((from.to_string(), state::retired_ca_path(&serial, ext)));
    }
    Ok(serial)
}

/// The CA certificates every bundle trusts besides the signing CA, in the recorded phase:
/// the new CA in phase 1, the old one in phase 2.
pub fn also_trusted(state: &State) -> Vec<String> {
    match state.record.ca_rotation {
        Some(1) => state.ca_next.iter().map(|c| c.cert_pem.clone()).collect(),
        Some(2) => state.ca_previous.iter().map(|c| c.cert_pem.clone()).collect(),
        _ => Vec::new(),
    }
}
