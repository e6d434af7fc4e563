//! Issuing: the CA (new, reused or imported from existingCA), every leaf's key and
//! certificate made in one parallel pass, signed as kubeadm's pkiutil would.

use super::*;

/// The CA to use: from `existingCA`, the state, or new.
pub struct CaSource<'a> {
    /// `pki.existingCA` (cert PEM, key PEM), if the topology has one.
    pub existing: Option<(&'a str, &'a str)>,
}

/// Issues every secret of `plan`, after `preflight` (whose result `pre` is) found nothing to
/// refuse. `now` is seconds since the epoch.
pub fn issue(
    plan: &Plan,
    state: &State,
    pre: &Preflight,
    ca_source: CaSource<'_>,
    now: i64,
    keys: &dyn KeySource,
) -> Result<(Pki, StateUpdate), IssueError> {
    let mut update = StateUpdate::default();
    let mut record = state.record.clone();
    record.format = state::FORMAT;
    if record.epoch.is_none() {
        record.epoch = Some(now);
    }

    let decisions = &pre.decisions;
    // Key generation dominates: every key this build needs (CA, leaves, signing key) is made
    // up front, in parallel, before anything is signed.
    let ca_needed = ca_source.existing.is_none() && state.ca_cert.is_none() && state.ca_key.is_none();
    let mut jobs: Vec<(String, KeyAlgorithm)> = decisions
        .iter()
        .filter(|d| d.action != Action::Reuse)
        .map(|d| (leaf_label(&d.member, d.leaf), plan.key_algorithm))
        .collect();
    if ca_needed {
        jobs.push(("etcd-ca".into(), plan.key_algorithm));
    }
    if state.signing_key.is_none() {
        jobs.push(("signing-key".into(), KeyAlgorithm::EcdsaP256));
    }
    let fresh: BTreeMap<String, PrivateKey> =
        jobs.into_par_iter().map(|(label, alg)| (label.clone(), keys.key(alg, &label))).collect();

    let ca = resolve_ca(plan, state, ca_source, now, keys, fresh.get("etcd-ca"), &mut update)?;
    let ca_key =
        PrivateKey::from_pem(&ca.key_pem).map_err(|e| IssueError::Corrupt(format!("CA key: {e}")))?;
    let ca_kp = ca_key.to_rcgen();
    let ca_der = ca.info.der.clone();
    let issuer = Issuer::from_ca_cert_der(&ca_der.clone().into(), &ca_kp)
        .map_err(|e| IssueError::Crypto { what: "the CA issuer".into(), why: e.to_string() })?;

    let (signing_key_pem, signing_key_new) = match &state.signing_key {
        Some(pem) => (pem.clone(), false),
        None => {
            let key = &fresh["signing-key"];
            let pem = pem_encode("PRIVATE KEY", &key.to_pkcs8_der());
            update.create.push(NewFile {
                path: state::SIGNING_KEY.into(),
                bytes: pem.clone().into_bytes(),
                mode: 0o600,
            });
            (pem, true)
        }
    };

    let profiles: BTreeMap<(&str, Leaf), &CertProfile> = plan
        .holders()
        .flat_map(|(name, certs)| certs.iter().map(move |c| ((name, c.leaf), &c.profile)))
        .collect();
    let not_before = match plan.behaviour.validity {
        ValidityRule::Backdated => now - BACKDATE_SECS,
        ValidityRule::LeafFromCa => ca.info.not_before,
    };
    let not_after = now + plan.cert_validity_secs as i64;

    let results: Vec<Result<(LeafDecision, Issued), IssueError>> = decisions
        .par_iter()
        .map(|d| {
            let profile = profiles[&(d.member.as_str(), d.leaf)];
            if d.action == Action::Reuse {
                let stored = &state.leaves[&d.member][&d.leaf];
                // `preflight` read it and checked its CA and its key.
                let info = pre.reused.get(&(d.member.clone(), d.leaf)).cloned().ok_or_else(|| {
                    IssueError::Corrupt(format!(
                        "{} was not checked",
                        state::leaf_path(&d.member, d.leaf, "crt")
                    ))
                })?;
                let issued = Issued {
                    cert_pem: stored.cert_pem.clone(),
                    key_pem: stored.key_pem.clone(),
                    info,
                    action: Action::Reuse,
                };
                return Ok((d.clone(), issued));
            }
            let label = leaf_label(&d.member, d.leaf);
            let key = &fresh[&label];
            let params = leaf_params(
                profile,
                ca.info.subject_key_id.as_deref(),
                keys.serial(&label),
                not_before,
                not_after,
            )?;
            let kp = key.to_rcgen();
            let cert = params
                .signed_by(&kp, &issuer)
                .map_err(|e| IssueError::Crypto { what: label.clone(), why: e.to_string() })?;
            let cert_pem = pem_encode("CERTIFICATE", cert.der());
            let info = x509::parse_der(cert.der()).map_err(|e| IssueError::Crypto { what: label, why: e })?;
            Ok((
                d.clone(),
                Issued { cert_pem, key_pem: key.to_kubeadm_pem(), info, action: d.action.clone() },
            ))
        })
        .collect();

    let mut leaves: BTreeMap<String, BTreeMap<Leaf, Issued>> = BTreeMap::new();
    for r in results {
        let (d, issued) = r?;
        if issued.action != Action::Reuse {
            if let Some(old) = state.leaves.get(&d.member).and_then(|l| l.get(&d.leaf)) {
                let serial = x509::parse_pem(&old.cert_pem)
                    .map(|i| i.serial_hex)
                    .unwrap_or_else(|_| "unreadable".into());
                for ext in ["crt", "key"] {
                    update.retire.push((
                        state::leaf_path(&d.member, d.leaf, ext),
                        state::retired_path(&d.member, d.leaf, &serial, ext),
                    ));
                }
            }
            update.store_pair(
                &state::leaf_path(&d.member, d.leaf, "key"),
                &issued.key_pem,
                &state::leaf_path(&d.member, d.leaf, "crt"),
                &issued.cert_pem,
            );
            record
                .issued
                .entry(d.member.clone())
                .or_default()
                .insert(d.leaf, IssuedFor::from(profiles[&(d.member.as_str(), d.leaf)]));
        }
        leaves.entry(d.member).or_default().insert(d.leaf, issued);
    }
    if record != state.record {
        update.record = Some(record);
    }
    let also_trusted = super::also_trusted(state);
    Ok((Pki { ca, signing_key_pem, signing_key_new, leaves, also_trusted }, update))
}

fn leaf_label(member: &str, leaf: Leaf) -> String {
    format!("{member}/{}", leaf.kubeadm_name())
}

fn resolve_ca(
    plan: &Plan,
    state: &State,
    source: CaSource<'_>,
    now: i64,
    keys: &dyn KeySource,
    fresh_key: Option<&PrivateKey>,
    update: &mut StateUpdate,
) -> Result<Issued, IssueError> {
    let read = |cert: &str, key: &str, action: Action| -> Result<Issued, IssueError> {
        let info = x509::parse_pem(cert).map_err(|e| IssueError::Corrupt(format!("CA certificate: {e}")))?;
        Ok(Issued { cert_pem: cert.to_string(), key_pem: key.to_string(), info, action })
    };
    match (source.existing, &state.ca_cert, &state.ca_key) {
        (Some((cert, key)), stored, _) => {
            let given = read(cert, key, Action::Imported)?;
            if stored.is_some() {
                // `preflight` checked that the state's CA is this one.
                return Ok(Issued { action: Action::Reuse, ..given });
            }
            let key =
                PrivateKey::from_pem(key).map_err(|e| IssueError::Corrupt(format!("existingCA key: {e}")))?;
            let key_pem = key.to_kubeadm_pem();
            update.store_pair(state::CA_KEY, &key_pem, state::CA_CERT, cert);
            Ok(Issued { key_pem, ..given })
        }
        (None, Some(cert), Some(key)) => read(cert, key, Action::Reuse),
        // `preflight` refused a CA certificate without its key, and the reverse.
        (None, Some(_), None) | (None, None, Some(_)) => {
            Err(IssueError::Corrupt("the CA certificate or key is missing".into()))
        }
        (None, None, None) => {
            let key = fresh_key.ok_or_else(|| IssueError::Corrupt("no key was made for the CA".into()))?;
            let kp = key.to_rcgen();
            let params = ca_params(
                plan.behaviour.key_id,
                key,
                keys.serial("etcd-ca"),
                now - BACKDATE_SECS,
                now + plan.ca_validity_secs as i64,
            )?;
            let cert = params
                .self_signed(&kp)
                .map_err(|e| IssueError::Crypto { what: "etcd-ca".into(), why: e.to_string() })?;
            let cert_pem = pem_encode("CERTIFICATE", cert.der());
            let key_pem = key.to_kubeadm_pem();
            update.store_pair(state::CA_KEY, &key_pem, state::CA_CERT, &cert_pem);
            let info = x509::parse_der(cert.der())
                .map_err(|why| IssueError::Crypto { what: "etcd-ca".into(), why })?;
            Ok(Issued { cert_pem, key_pem, info, action: Action::New })
        }
    }
}

fn time_at(secs: i64) -> Result<OffsetDateTime, IssueError> {
    OffsetDateTime::from_unix_timestamp(secs)
        .map_err(|e| IssueError::Crypto { what: "validity".into(), why: e.to_string() })
}

/// A subject with only a CN, encoded as Go encodes strings (PrintableString when it can).
fn subject(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    let printable = cn.bytes().all(|b| b.is_ascii_alphanumeric() || b" '()+,-./:=?".contains(&b));
    let value = match rcgen::string::PrintableString::try_from(cn) {
        Ok(p) if printable => DnValue::PrintableString(p),
        _ => DnValue::Utf8String(cn.to_string()),
    };
    dn.push(DnType::CommonName, value);
    dn
}

/// The SubjectKeyId Go's `CreateCertificate` fills in for a CA, by the release's method.
fn go_subject_key_id(method: KeyIdMethod, key: &PrivateKey) -> Vec<u8> {
    let bits = key.public_key_bits();
    match method {
        KeyIdMethod::Sha1 => {
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &bits).as_ref().to_vec()
        }
    }
}

pub(super) fn ca_params(
    key_id: KeyIdMethod,
    key: &PrivateKey,
    serial: u64,
    not_before: i64,
    not_after: i64,
) -> Result<CertificateParams, IssueError> {
    let mut p = CertificateParams::default();
    p.distinguished_name = subject("etcd-ca");
    p.serial_number = Some(serial.into());
    p.not_before = time_at(not_before)?;
    p.not_after = time_at(not_after)?;
    // Everything else is written by hand, in Go's order (see `extensions`).
    p.is_ca = IsCa::NoCa;
    p.custom_extensions = vec![
        extensions::key_usage(true),
        extensions::basic_constraints(true),
        extensions::subject_key_id(&go_subject_key_id(key_id, key)),
    ];
    p.custom_extensions.extend(extensions::subject_alt_name(&["etcd-ca".to_string()], &[]));
    Ok(p)
}

fn leaf_params(
    profile: &CertProfile,
    ca_key_id: Option<&[u8]>,
    serial: u64,
    not_before: i64,
    not_after: i64,
) -> Result<CertificateParams, IssueError> {
    let mut p = CertificateParams::default();
    p.distinguished_name = subject(&profile.common_name);
    p.serial_number = Some(serial.into());
    p.not_before = time_at(not_before)?;
    p.not_after = time_at(not_after)?;
    // Go writes CA:FALSE and an AuthorityKeyId on leaves, and no SubjectKeyId.
    p.is_ca = IsCa::NoCa;
    p.custom_extensions = vec![
        extensions::key_usage(false),
        extensions::ext_key_usage(profile.server_auth),
        extensions::basic_constraints(false),
    ];
    p.custom_extensions.extend(ca_key_id.map(extensions::authority_key_id));
    p.custom_extensions.extend(extensions::subject_alt_name(&profile.dns_names, &profile.ip_addresses));
    Ok(p)
}
