//! scripts/package.sh, run as a user runs it (with the test build of the binary instead of a
//! release build), and the Function App zip it writes, read back with a zip reader.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ZIP_NAME: &str = "runner-dispatch-functionapp.zip";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A pools file of the user's own: the example with another owner.
fn own_pools_file(dir: &Path) -> PathBuf {
    let example = std::fs::read_to_string(repo().join("runners.example.toml")).expect("example");
    let path = dir.join("my-runners.toml");
    std::fs::write(&path, example.replace("\"octo-org\"", "\"my-org\"")).expect("write pools");
    path
}

/// `bash scripts/package.sh --no-build` writing into `dist`, shipping `binary` and the
/// pools file `pools` (`None`: none given), with `env` added.
fn package_with(dist: &Path, binary: &Path, pools: Option<&Path>, env: &[(&str, &str)]) -> Output {
    let mut c = Command::new("bash");
    c.arg(repo().join("scripts/package.sh"))
        .arg("--no-build")
        .env("DIST_DIR", dist)
        .env("BINARY", binary)
        .env_remove("POOLS_FILE")
        .env_remove("NO_POOLS_FILE")
        .env_remove("ALLOW_EXAMPLE_POOLS")
        .env_remove("TARGET")
        .env_remove("ZIPPER")
        // The test build links this machine's glibc; the ceiling check has its own test.
        .env("MAX_GLIBC", "9.99");
    if let Some(p) = pools {
        c.env("POOLS_FILE", p);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run bash scripts/package.sh")
}

/// [`package_with`] with the user's own pools file and the zipper chosen.
fn package(dist: &Path, binary: &Path, zipper: Option<&str>) -> Output {
    let pools = own_pools_file(dist);
    match zipper {
        Some(z) => package_with(dist, binary, Some(&pools), &[("ZIPPER", z)]),
        None => package_with(dist, binary, Some(&pools), &[]),
    }
}

struct Entry {
    mode: Option<u32>,
    is_dir: bool,
    data: Vec<u8>,
}

fn read_zip(path: &Path) -> BTreeMap<String, Entry> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut archive = zip::ZipArchive::new(file).expect("a readable zip");
    let mut entries = BTreeMap::new();
    for i in 0..archive.len() {
        let mut f = archive.by_index(i).expect("entry");
        let name = f.name().expect("UTF-8 entry name").into_owned();
        let (mode, is_dir) = (f.unix_mode(), f.is_dir());
        let mut data = Vec::new();
        f.read_to_end(&mut data).expect("entry data");
        assert!(entries.insert(name.clone(), Entry { mode, is_dir, data }).is_none(), "{name} twice in the zip");
    }
    entries
}

fn read_json(bytes: &[u8], what: &str) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{what} is not valid JSON: {e}"))
}

/// Every check the issue asks of the package, on a zip written with `zipper`.
fn check_layout(zipper: Option<&str>) {
    let dist = tempfile::tempdir().expect("tmp");
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_runner-dispatch"));
    let out = package(dist.path(), &binary, zipper);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "package.sh failed ({:?}):\n{stderr}", out.status);
    let entries = read_zip(&dist.path().join(ZIP_NAME));
    let mut expected: Vec<String> = Vec::new();

    // host.json at the root, valid JSON, equal to the repository's.
    let host = entries.get("host.json").expect("host.json at the root of the zip");
    assert_eq!(host.data, std::fs::read(repo().join("host.json")).expect("host.json"), "host.json differs");
    let host = read_json(&host.data, "host.json");
    expected.push("host.json".into());

    // The executable host.json names, at the root, mode 0755, and the very binary given.
    let exe = host["customHandler"]["description"]["defaultExecutablePath"]
        .as_str()
        .expect("host.json names customHandler.description.defaultExecutablePath");
    let entry = entries.get(exe).unwrap_or_else(|| panic!("{exe} (host.json's executable) not at the root"));
    assert_eq!(entry.mode.map(|m| m & 0o7777), Some(0o755), "{exe} must be stored with Unix mode 0755");
    assert!(entry.data == std::fs::read(&binary).expect("binary"), "{exe} in the zip is not the binary given");
    expected.push(exe.to_string());

    // Every function folder at the root, function.json equal to the source.
    let mut functions = 0;
    for dir in std::fs::read_dir(repo().join("function_app")).expect("function_app/") {
        let dir = dir.expect("entry").path();
        let source = dir.join("function.json");
        if !source.is_file() {
            continue;
        }
        let name = dir.file_name().expect("name").to_string_lossy().into_owned();
        let key = format!("{name}/function.json");
        let entry = entries.get(&key).unwrap_or_else(|| panic!("{key} not in the zip"));
        assert_eq!(entry.data, std::fs::read(&source).expect("function.json"), "{key} differs from the source");
        read_json(&entry.data, &key);
        expected.push(key);
        expected.push(format!("{name}/"));
        functions += 1;
    }
    assert!(functions >= 4, "expected the four functions, found {functions}");

    // The pools file, accepted by the zipped binary itself.
    let pools = entries.get("runners.toml").expect("runners.toml at the root");
    expected.push("runners.toml".into());
    let app = tempfile::tempdir().expect("tmp");
    let exe_path = app.path().join(exe);
    std::fs::write(&exe_path, &entries[exe].data).expect("write exe");
    std::fs::set_permissions(&exe_path, std::fs::Permissions::from_mode(entries[exe].mode.unwrap_or(0) & 0o7777))
        .expect("chmod");
    std::fs::write(app.path().join("runners.toml"), &pools.data).expect("write pools");
    let check = Command::new(&exe_path)
        .args(["check-config", "--pools-only"])
        .current_dir(app.path())
        .env_remove("RUNNER_DISPATCH_CONFIG")
        .env_remove("RUNNER_DISPATCH_CONFIG_TOML")
        .output()
        .expect("run the binary from the zip");
    assert!(
        check.status.success(),
        "check-config rejected the packaged runners.toml:\n{}",
        String::from_utf8_lossy(&check.stderr)
    );

    // Nothing else: no dist/ or target/ prefix, no stray files. Folder entries only for
    // the function folders (zip and python's zipfile both write them).
    let unexpected: Vec<&String> = entries.keys().filter(|k| !expected.contains(k)).collect();
    assert!(unexpected.is_empty(), "unexpected entries in the zip: {unexpected:?}");
    for (name, e) in &entries {
        assert_eq!(e.is_dir, name.ends_with('/'), "{name}");
    }
}

#[test]
fn package_zip_made_with_python_zipfile_has_the_function_app_layout() {
    check_layout(Some("python"));
}

#[test]
fn package_zip_made_with_the_zip_cli_has_the_function_app_layout() {
    let has_zip = Command::new("sh").args(["-c", "command -v zip"]).output().is_ok_and(|o| o.status.success());
    if !has_zip {
        eprintln!("zip is not installed: the script falls back to python (tested above)");
        return;
    }
    check_layout(Some("zip"));
}

#[test]
fn package_fails_with_a_clear_message_and_no_zip_when_the_binary_is_missing_or_not_executable() {
    let dist = tempfile::tempdir().expect("tmp");
    let not_executable = dist.path().join("runner-dispatch");
    std::fs::write(&not_executable, b"#!/bin/sh\n").expect("write");
    std::fs::set_permissions(&not_executable, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    for binary in [dist.path().join("no-such-binary"), not_executable] {
        let out = package(dist.path(), &binary, None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}:\n{stderr}", binary.display());
        let message = format!("package.sh: error: binary {} not found or not executable", binary.display());
        assert!(stderr.contains(&message), "expected {message:?} in:\n{stderr}");
        assert!(!dist.path().join(ZIP_NAME).exists(), "a zip was written despite the error");
    }
}

#[test]
fn package_refuses_to_ship_no_pools_file_the_example_or_an_invalid_one() {
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_runner-dispatch"));
    let dist = tempfile::tempdir().expect("tmp");
    let bad = dist.path().join("bad.toml");
    std::fs::write(&bad, "[github]\nallowed_owners = []\n[[pools]]\nname = \"x\"\n").expect("write");
    let missing = dist.path().join("no-such.toml");
    let example = repo().join("runners.example.toml");
    for (pools, expect) in [
        (missing.as_path(), "no pools file"),
        (example.as_path(), "example pools file"),
        (bad.as_path(), "has the problems above"),
    ] {
        let out = package_with(dist.path(), &binary, Some(pools), &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}:\n{stderr}", pools.display());
        assert!(stderr.contains(expect), "expected {expect:?} for {}:\n{stderr}", pools.display());
        assert!(!dist.path().join(ZIP_NAME).exists(), "a zip was written despite the error");
    }
    // A demo app may ship the example on purpose.
    let out = package_with(dist.path(), &binary, Some(&example), &[("ALLOW_EXAMPLE_POOLS", "1")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn package_refuses_a_binary_the_functions_host_cannot_run() {
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_runner-dispatch"));
    let dist = tempfile::tempdir().expect("tmp");
    let pools = own_pools_file(dist.path());
    // This machine's build needs a newer glibc than 2.17.
    let out = package_with(dist.path(), &binary, Some(&pools), &[("MAX_GLIBC", "2.17")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("newer than 2.17") && stderr.contains("x86_64-unknown-linux-musl"), "{stderr}");
    // A script is not a Linux x86-64 executable.
    let script = dist.path().join("runner-dispatch");
    std::fs::write(&script, b"#!/bin/sh\necho hi\n").expect("write");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = package_with(dist.path(), &script, Some(&pools), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not an ELF executable"), "{stderr}");
    assert!(!dist.path().join(ZIP_NAME).exists());
}
