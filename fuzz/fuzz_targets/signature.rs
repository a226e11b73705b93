//! `verify_signature` over arbitrary headers, bodies and secret lists: never panics, accepts
//! only a header some configured secret produces, and always accepts what `sign` produced.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use runner_dispatch::secret::Secret;
use runner_dispatch::webhook::{sign, verify_signature};

#[derive(Arbitrary, Debug)]
struct Input {
    header: Option<String>,
    body: Vec<u8>,
    secrets: Vec<String>,
    /// Which secret signs a second, known-good request.
    sign_with: u8,
}

fuzz_target!(|input: Input| {
    let secrets: Vec<Secret> = input.secrets.iter().map(|s| Secret::from(s.as_str())).collect();
    let verdict = verify_signature(&secrets, input.header.as_deref(), &input.body);
    if verdict.is_ok() {
        let header = input.header.as_deref().unwrap_or_default().trim();
        assert!(
            secrets.iter().any(|s| sign(s.expose().as_bytes(), &input.body).eq_ignore_ascii_case(header)),
            "accepted a header no configured secret produces"
        );
    }
    if !secrets.is_empty() {
        let secret = &secrets[usize::from(input.sign_with) % secrets.len()];
        let good = sign(secret.expose().as_bytes(), &input.body);
        assert_eq!(verify_signature(&secrets, Some(&good), &input.body), Ok(()));
    }
});
