//! The S3 gateway driven by real S3 clients, each a separate process: the
//! aws cli, boto3 (in a venv this test creates) and rclone, against a real
//! cluster (coordinator + 3 nodes) and a `dfs-sim s3` gateway.
//!
//! With `CI` set a missing client fails the test; otherwise the test prints
//! a notice and skips that client.

mod common;

use common::*;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output};

const AK: &str = "DFSTESTACCESSKEY";
const SK: &str = "dfs-test-secret-key-0123456789";
/// Small chunks, so that objects span several chunks and stripes.
const CHUNK: u64 = 256 * 1024;

fn cluster() -> Cluster {
    Cluster::builder()
        .nodes(3)
        .replication(2)
        .parity("xor")
        .chunk_size(CHUNK)
        .start()
}

/// Whether `cmd --version` runs; with `CI` set a missing tool is fatal.
fn have(tool: &str, args: &[&str]) -> bool {
    let ok = Command::new(tool)
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var_os("CI").is_some() {
            panic!("{tool} is required with CI set (.ci/run installs it)");
        }
        eprintln!("NOTICE: {tool} not found; skipping this S3 client test");
    }
    ok
}

/// The aws cli against the gateway, isolated from any user configuration.
fn aws(dir: &Path, endpoint: &str, secret: &str, args: &[&str]) -> Output {
    Command::new("aws")
        .arg("--endpoint-url")
        .arg(format!("http://{endpoint}"))
        .args(args)
        .env(
            "AWS_ACCESS_KEY_ID",
            if secret == SK { AK } else { "WRONGKEY" },
        )
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", dir.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.join("no-aws-credentials"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_PAGER", "")
        .env_remove("AWS_CA_BUNDLE")
        .output()
        .expect("run aws")
}

fn aws_ok(dir: &Path, ep: &str, args: &[&str]) -> String {
    ok(aws(dir, ep, SK, args), &format!("aws {}", args.join(" ")))
}

fn aws_fails(dir: &Path, ep: &str, secret: &str, args: &[&str], needle: &str) {
    let o = aws(dir, ep, secret, args);
    assert!(
        !o.status.success() && stderr(&o).contains(needle),
        "aws {} should fail with {needle}: {}",
        args.join(" "),
        describe(&o)
    );
}

/// A bare HTTP/1.1 GET (no signature unless the URL carries one):
/// returns status and body.
fn http_get(endpoint: &str, path_and_query: &str) -> (u16, Vec<u8>) {
    let mut s = std::net::TcpStream::connect(endpoint).expect("connect gateway");
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        s,
        "GET {path_and_query} HTTP/1.1\r\nHost: {endpoint}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
}

fn md5_hex(data: &[u8]) -> String {
    // The ETag of a single PUT is the MD5 of the object; python's hashlib
    // is the independent implementation checking ours.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x");
    std::fs::write(&p, data).unwrap();
    let o = Command::new("python3")
        .args([
            "-c",
            "import hashlib,sys;print(hashlib.md5(open(sys.argv[1],'rb').read()).hexdigest())",
        ])
        .arg(&p)
        .output()
        .expect("python3");
    stdout(&o).trim().to_string()
}

#[test]
fn aws_cli_buckets_multipart_ranges_copy_presign_and_auth() {
    if !have("aws", &["--version"]) {
        return;
    }
    let mut c = cluster();
    let ep = c.start_s3(AK, SK, &[]);
    let d = c.dir().to_path_buf();
    let d = d.as_path();

    // Buckets.
    aws_ok(d, &ep, &["s3", "mb", "s3://photos"]);
    aws_fails(
        d,
        &ep,
        SK,
        &["s3", "mb", "s3://photos"],
        "BucketAlreadyOwnedByYou",
    );
    assert!(aws_ok(d, &ep, &["s3", "ls"]).contains("photos"));

    // Multipart upload (the cli splits files over 8 MiB and sends parts in
    // parallel), byte-exact download, multipart ETag.
    let big = random_bytes(1, 20 * 1024 * 1024 + 12_345);
    let big_path = c.scratch("big.bin");
    std::fs::write(&big_path, &big).unwrap();
    let bp = big_path.display().to_string();
    aws_ok(
        d,
        &ep,
        &["s3", "cp", "--no-progress", &bp, "s3://photos/iso/big.bin"],
    );
    let back = c.scratch("big.back");
    aws_ok(
        d,
        &ep,
        &[
            "s3",
            "cp",
            "--no-progress",
            "s3://photos/iso/big.bin",
            &back.display().to_string(),
        ],
    );
    assert_same_bytes(&std::fs::read(&back).unwrap(), &big, "multipart download");
    let head = aws_ok(
        d,
        &ep,
        &[
            "s3api",
            "head-object",
            "--bucket",
            "photos",
            "--key",
            "iso/big.bin",
        ],
    );
    assert!(head.contains("-3\\\""), "multipart ETag md5-N: {head}");
    // It is an ordinary dfs-sim file too, and healthy.
    c.get_exact("photos/iso/big.bin", &big);
    assert_eq!(c.stat("photos/iso/big.bin")["health"], "healthy");

    // Single PUT: ETag is the MD5; a wrong Content-MD5 commits nothing.
    let small = random_bytes(2, 300_000);
    let sp = c.scratch("small.bin");
    std::fs::write(&sp, &small).unwrap();
    let spath = sp.display().to_string();
    let put = aws_ok(
        d,
        &ep,
        &[
            "s3api",
            "put-object",
            "--bucket",
            "photos",
            "--key",
            "docs/small.bin",
            "--body",
            &spath,
        ],
    );
    let md5 = md5_hex(&small);
    assert!(put.contains(&md5), "ETag is the MD5 {md5}: {put}");
    aws_fails(
        d,
        &ep,
        SK,
        &[
            "s3api",
            "put-object",
            "--bucket",
            "photos",
            "--key",
            "bad-md5",
            "--body",
            &spath,
            "--content-md5",
            "AAAAAAAAAAAAAAAAAAAAAA==",
        ],
        "BadDigest",
    );

    // Ranged GET across chunk and part boundaries.
    let part = c.scratch("range.bin");
    let pp = part.display().to_string();
    aws_ok(
        d,
        &ep,
        &[
            "s3api",
            "get-object",
            "--bucket",
            "photos",
            "--key",
            "iso/big.bin",
            "--range",
            "bytes=262000-8389000",
            &pp,
        ],
    );
    assert_same_bytes(
        &std::fs::read(&part).unwrap(),
        &big[262_000..8_389_001],
        "ranged GET",
    );

    // Copy inside the cluster (multipart copy for the big one).
    aws_ok(
        d,
        &ep,
        &[
            "s3",
            "cp",
            "--no-progress",
            "s3://photos/iso/big.bin",
            "s3://photos/copy/big.bin",
        ],
    );
    c.get_exact("photos/copy/big.bin", &big);

    // Presigned GET works without credentials; unsigned requests do not.
    let url = aws_ok(
        d,
        &ep,
        &[
            "s3",
            "presign",
            "s3://photos/docs/small.bin",
            "--expires-in",
            "300",
        ],
    );
    let path = url
        .trim()
        .split_once(&ep)
        .expect("url on endpoint")
        .1
        .to_string();
    let (status, body) = http_get(&ep, &path);
    assert_eq!(
        status,
        200,
        "presigned GET: {}",
        String::from_utf8_lossy(&body)
    );
    assert_same_bytes(&body, &small, "presigned GET");
    let (status, body) = http_get(&ep, "/photos/docs/small.bin");
    assert_eq!(
        status,
        403,
        "unsigned GET refused: {}",
        String::from_utf8_lossy(&body)
    );
    assert!(String::from_utf8_lossy(&body).contains("AccessDenied"));

    // Wrong credentials.
    aws_fails(d, &ep, "wrong-secret", &["s3", "ls"], "InvalidAccessKeyId");
    let o = Command::new("aws")
        .args(["--endpoint-url", &format!("http://{ep}"), "s3", "ls"])
        .env("AWS_ACCESS_KEY_ID", AK)
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", d.join("none"))
        .env("AWS_SHARED_CREDENTIALS_FILE", d.join("none"))
        .env_remove("AWS_CA_BUNDLE")
        .output()
        .unwrap();
    assert!(
        stderr(&o).contains("SignatureDoesNotMatch"),
        "{}",
        describe(&o)
    );

    // A file put with the CLI is an object too.
    c.put_ok("photos/cli/file.txt", b"from the cli");
    assert!(aws_ok(d, &ep, &["s3", "ls", "--recursive", "s3://photos/"]).contains("cli/file.txt"));

    // A bucket must be empty to go.
    aws_fails(d, &ep, SK, &["s3", "rb", "s3://photos"], "BucketNotEmpty");
    aws_ok(d, &ep, &["s3", "rm", "--recursive", "s3://photos/"]);
    aws_ok(d, &ep, &["s3", "rb", "s3://photos"]);
    assert!(c.ls().is_empty(), "nothing left: {:?}", c.ls());
}

/// boto3 script: pagination past 1,000 keys (V2 and V1), delimiter,
/// parallel multipart parts, presigned GET, wrong credentials.
const BOTO3_SCRIPT: &str = r#"
import sys, os, hashlib, urllib.request, concurrent.futures as cf
import boto3, botocore
from botocore.config import Config
ep, ak, sk = sys.argv[1], sys.argv[2], sys.argv[3]
cfg = Config(max_pool_connections=16, retries={"max_attempts": 2})
s3 = boto3.client("s3", endpoint_url=ep, aws_access_key_id=ak, aws_secret_access_key=sk,
                  region_name="us-east-1", config=cfg)
s3.create_bucket(Bucket="many")
keys = [f"k/{i // 100:02d}/{i:05d}" for i in range(1100)] + ["top-a", "top-b"]
with cf.ThreadPoolExecutor(16) as ex:
    list(ex.map(lambda k: s3.put_object(Bucket="many", Key=k, Body=k.encode()), keys))

got = []
for page in s3.get_paginator("list_objects_v2").paginate(Bucket="many"):
    got += [o["Key"] for o in page.get("Contents", [])]
assert got == sorted(keys), (len(got), got[:3])
pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket="many", PaginationConfig={"PageSize": 250}))
assert len(pages) == 5 and sum(p["KeyCount"] for p in pages) == len(keys), [p["KeyCount"] for p in pages]
v1 = []
for page in s3.get_paginator("list_objects").paginate(Bucket="many"):
    v1 += [o["Key"] for o in page.get("Contents", [])]
assert v1 == sorted(keys), len(v1)
r = s3.list_objects_v2(Bucket="many", Delimiter="/")
assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["k/"], r.get("CommonPrefixes")
assert [o["Key"] for o in r["Contents"]] == ["top-a", "top-b"]
r = s3.list_objects_v2(Bucket="many", Prefix="k/", Delimiter="/", MaxKeys=4)
assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["k/00/", "k/01/", "k/02/", "k/03/"], r
assert r["IsTruncated"]
r = s3.list_objects_v2(Bucket="many", Prefix="k/", Delimiter="/", ContinuationToken=r["NextContinuationToken"])
assert [p["Prefix"] for p in r["CommonPrefixes"]] == [f"k/{i:02d}/" for i in range(4, 11)], r
r = s3.list_objects_v2(Bucket="many", Prefix="k/10/", StartAfter="k/10/01050")
assert [o["Key"] for o in r["Contents"]] == [f"k/10/{i:05d}" for i in range(1051, 1100)]
assert s3.get_object(Bucket="many", Key="k/03/00321")["Body"].read() == b"k/03/00321"

# Multipart: parts uploaded in parallel, in reverse order.
parts = [os.urandom(5 * 1024 * 1024 + i * 1000) for i in range(4)] + [b"tail"]
up = s3.create_multipart_upload(Bucket="many", Key="mp", ContentType="video/x-test", Metadata={"who": "boto3"})
def send(i):
    return i + 1, s3.upload_part(Bucket="many", Key="mp", UploadId=up["UploadId"], PartNumber=i + 1, Body=parts[i])["ETag"]
with cf.ThreadPoolExecutor(4) as ex:
    etags = sorted(ex.map(send, reversed(range(len(parts)))))
res = s3.complete_multipart_upload(Bucket="many", Key="mp", UploadId=up["UploadId"],
    MultipartUpload={"Parts": [{"ETag": e, "PartNumber": n} for n, e in etags]})
want = hashlib.md5(b"".join(bytes.fromhex(e.strip('"')) for _, e in etags)).hexdigest() + "-5"
assert res["ETag"].strip('"') == want, (res["ETag"], want)
obj = s3.get_object(Bucket="many", Key="mp")
assert obj["Body"].read() == b"".join(parts)
assert obj["ContentType"] == "video/x-test" and obj["Metadata"] == {"who": "boto3"}, obj
rng = s3.get_object(Bucket="many", Key="mp", Range="bytes=5242870-5242890")["Body"].read()
assert rng == b"".join(parts)[5242870:5242891]

# Metadata, content type, ETag, Content-MD5, ranges, errors.
import base64
body = os.urandom(300000)
r = s3.put_object(Bucket="many", Key="docs/x", Body=body, ContentType="application/x-test",
                  Metadata={"owner": "alice"}, ContentMD5=base64.b64encode(hashlib.md5(body).digest()).decode())
assert r["ETag"].strip('"') == hashlib.md5(body).hexdigest()
h = s3.head_object(Bucket="many", Key="docs/x")
assert h["ContentType"] == "application/x-test" and h["Metadata"] == {"owner": "alice"} and h["ContentLength"] == 300000, h
assert s3.get_object(Bucket="many", Key="docs/x", Range="bytes=-1000")["Body"].read() == body[-1000:]
def code(f):
    try:
        f()
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]
    return None
assert code(lambda: s3.get_object(Bucket="many", Key="docs/x", Range="bytes=400000-")) == "InvalidRange"
assert code(lambda: s3.get_object(Bucket="many", Key="no/such")) == "NoSuchKey"
assert code(lambda: s3.get_object(Bucket="nobucket", Key="x")) == "NoSuchBucket"
assert code(lambda: s3.delete_bucket(Bucket="many")) == "BucketNotEmpty"
s3.copy_object(Bucket="many", Key="docs/copy", CopySource={"Bucket": "many", "Key": "docs/x"})
c = s3.get_object(Bucket="many", Key="docs/copy")
assert c["Body"].read() == body and c["Metadata"] == {"owner": "alice"}
s3.copy_object(Bucket="many", Key="docs/copy", CopySource={"Bucket": "many", "Key": "docs/copy"},
               MetadataDirective="REPLACE", Metadata={"owner": "bob"})
assert s3.head_object(Bucket="many", Key="docs/copy")["Metadata"] == {"owner": "bob"}

# Keys that look like paths round-trip exactly and stay inside the bucket.
weird = ["../../etc/passwd", "a//b", "/lead", "trail/", "./x/../y", "sp ace/ünï 🎉", "pct%2F%", "tab\tkey"]
for k in weird:
    s3.put_object(Bucket="many", Key=k, Body=k.encode())
    assert s3.get_object(Bucket="many", Key=k)["Body"].read() == k.encode(), k
listed = [o["Key"] for o in s3.list_objects_v2(Bucket="many", Prefix="../")["Contents"]]
assert listed == ["../../etc/passwd"], listed

# Multipart by hand: list parts and uploads, abort.
up2 = s3.create_multipart_upload(Bucket="many", Key="mp/aborted")
s3.upload_part(Bucket="many", Key="mp/aborted", UploadId=up2["UploadId"], PartNumber=1, Body=b"x" * 1000)
s3.upload_part(Bucket="many", Key="mp/aborted", UploadId=up2["UploadId"], PartNumber=3, Body=b"y" * 10)
lp = s3.list_parts(Bucket="many", Key="mp/aborted", UploadId=up2["UploadId"])
assert [(p["PartNumber"], p["Size"]) for p in lp["Parts"]] == [(1, 1000), (3, 10)], lp["Parts"]
lu = s3.list_multipart_uploads(Bucket="many")
assert [u["UploadId"] for u in lu["Uploads"]] == [up2["UploadId"]], lu
s3.abort_multipart_upload(Bucket="many", Key="mp/aborted", UploadId=up2["UploadId"])
assert code(lambda: s3.list_parts(Bucket="many", Key="mp/aborted", UploadId=up2["UploadId"])) == "NoSuchUpload"
for k in weird + ["docs/x", "docs/copy"]:
    s3.delete_object(Bucket="many", Key=k)

url = s3.generate_presigned_url("get_object", Params={"Bucket": "many", "Key": "top-a"}, ExpiresIn=300)
assert urllib.request.urlopen(url).read() == b"top-a"

bad = boto3.client("s3", endpoint_url=ep, aws_access_key_id=ak, aws_secret_access_key="nope",
                   region_name="us-east-1", config=Config(retries={"max_attempts": 1}))
try:
    bad.list_buckets()
    raise SystemExit("wrong secret accepted")
except botocore.exceptions.ClientError as e:
    assert e.response["Error"]["Code"] == "SignatureDoesNotMatch", e.response

objs = [{"Key": k} for k in keys]
for i in range(0, len(objs), 1000):
    r = s3.delete_objects(Bucket="many", Delete={"Objects": objs[i:i + 1000], "Quiet": True})
    assert not r.get("Errors"), r
s3.delete_object(Bucket="many", Key="mp")
s3.delete_bucket(Bucket="many")
print("boto3 ok")
"#;

#[test]
fn boto3_pagination_multipart_presign_and_auth() {
    if !have("python3", &["-m", "venv", "--help"]) {
        return;
    }
    let mut c = cluster();
    let ep = c.start_s3(AK, SK, &[]);
    let venv = c.scratch("venv");
    let o = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .output()
        .expect("python3 -m venv");
    if !o.status.success() {
        if std::env::var_os("CI").is_some() {
            panic!("python3 -m venv failed with CI set: {}", describe(&o));
        }
        eprintln!(
            "NOTICE: python3 venv unavailable; skipping boto3 ({})",
            stderr(&o)
        );
        return;
    }
    let py = venv.join("bin/python");
    let o = Command::new(&py)
        .args([
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "boto3",
        ])
        .output()
        .expect("pip install boto3");
    if !o.status.success() {
        if std::env::var_os("CI").is_some() {
            panic!("pip install boto3 failed with CI set: {}", describe(&o));
        }
        eprintln!("NOTICE: cannot install boto3; skipping ({})", stderr(&o));
        return;
    }
    let script = c.scratch("boto3_test.py");
    std::fs::write(&script, BOTO3_SCRIPT).unwrap();
    let o = Command::new(&py)
        .arg(&script)
        .args([format!("http://{ep}").as_str(), AK, SK])
        .output()
        .expect("run boto3 script");
    let out = ok(o, "boto3 script");
    assert!(out.contains("boto3 ok"), "{out}");
    assert!(c.ls().is_empty(), "nothing left: {:?}", c.ls());

    // An abandoned multipart upload is collected by a gateway whose upload
    // TTL has passed (any gateway: they share no state).
    let gc = c.start_s3(AK, SK, &["--upload-ttl-s", "1"]);
    let abandon = r#"
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], aws_access_key_id=sys.argv[2],
                  aws_secret_access_key=sys.argv[3], region_name="us-east-1")
s3.create_bucket(Bucket="gcbucket")
up = s3.create_multipart_upload(Bucket="gcbucket", Key="left/behind")
s3.upload_part(Bucket="gcbucket", Key="left/behind", UploadId=up["UploadId"], PartNumber=1, Body=b"z" * 100000)
print(up["UploadId"])
"#;
    let o = Command::new(&py)
        .args(["-c", abandon, &format!("http://{ep}"), AK, SK])
        .output()
        .unwrap();
    // (The collector may already have struck: its TTL is one second.)
    let uid = ok(o, "abandon an upload").trim().to_string();
    assert_eq!(uid.len(), 32, "upload id: {uid}");
    wait_until(DEADLINE, "the abandoned upload is collected", || {
        !c.ls().iter().any(|n| n.contains(&uid))
    });
    assert!(
        c.ls().iter().all(|n| !n.starts_with(".s3/parts/")),
        "{:?}",
        c.ls()
    );
    let _ = gc;
}

#[test]
fn rclone_sync_and_check_a_tree() {
    if !have("rclone", &["version"]) {
        return;
    }
    let mut c = cluster();
    let ep = c.start_s3(AK, SK, &[]);
    // A tree of a few hundred mixed files: empty, small, multi-chunk, a few
    // large enough for rclone's multipart path; nested dirs, spaces, unicode.
    let tree = c.scratch("tree");
    let mut n = 0u64;
    for dir in [
        "",
        "a",
        "a/b",
        "a/b/c",
        "spaced dir",
        "ünï/cödé",
        "deep/1/2/3/4",
    ] {
        std::fs::create_dir_all(tree.join(dir)).unwrap();
        for i in 0..45 {
            n += 1;
            let size = match i % 9 {
                0 => 0,
                1 => 1,
                2..=5 => (n as usize * 7919) % 20_000,
                6 | 7 => 300_000 + i as usize,
                _ => 700_000,
            };
            let name = if i % 10 == 3 {
                format!("file {i} ✓.dat")
            } else {
                format!("f{i:03}.bin")
            };
            std::fs::write(tree.join(dir).join(name), random_bytes(n, size)).unwrap();
        }
    }
    std::fs::write(
        tree.join("big-multipart.bin"),
        random_bytes(999, 6 * 1024 * 1024 + 3),
    )
    .unwrap();
    let rclone = |args: &[&str]| {
        Command::new("rclone")
            .args(args)
            .args([
                "--s3-upload-cutoff",
                "5M",
                "--s3-chunk-size",
                "5M",
                "--transfers",
                "8",
                "--checkers",
                "8",
            ])
            .env("RCLONE_CONFIG", c.scratch("rclone.conf"))
            .env_remove("AWS_CA_BUNDLE")
            .env("RCLONE_CONFIG_DFS_TYPE", "s3")
            .env("RCLONE_CONFIG_DFS_PROVIDER", "Other")
            .env("RCLONE_CONFIG_DFS_ACCESS_KEY_ID", AK)
            .env("RCLONE_CONFIG_DFS_SECRET_ACCESS_KEY", SK)
            .env("RCLONE_CONFIG_DFS_ENDPOINT", format!("http://{ep}"))
            .env("RCLONE_CONFIG_DFS_REGION", "us-east-1")
            .output()
            .expect("run rclone")
    };
    let t = tree.display().to_string();
    ok(rclone(&["mkdir", "dfs:backup"]), "rclone mkdir");
    ok(rclone(&["sync", &t, "dfs:backup/tree"]), "rclone sync");
    ok(rclone(&["check", &t, "dfs:backup/tree"]), "rclone check");
    // Change the tree: sync again deletes and updates, check still agrees.
    std::fs::remove_file(tree.join("a/f000.bin")).unwrap();
    std::fs::write(tree.join("a/b/f001.bin"), b"changed").unwrap();
    ok(
        rclone(&["sync", &t, "dfs:backup/tree"]),
        "rclone sync again",
    );
    ok(
        rclone(&["check", &t, "dfs:backup/tree"]),
        "rclone check again",
    );
    let back = c.scratch("back");
    ok(
        rclone(&["copy", "dfs:backup/tree", &back.display().to_string()]),
        "rclone copy back",
    );
    for entry in ["big-multipart.bin", "ünï/cödé/file 3 ✓.dat", "a/b/f001.bin"] {
        assert_same_bytes(
            &std::fs::read(back.join(entry)).unwrap(),
            &std::fs::read(tree.join(entry)).unwrap(),
            entry,
        );
    }
}

/// Chunk bytes the nodes sent and received on the data path (Get and Put,
/// from their Prometheus counters): every byte a client or gateway moves
/// to or from a node. A copy inside the cluster adds none (a node's local
/// clone is not a transfer).
fn data_path_bytes(c: &mut Cluster) -> u64 {
    (0..c.node_count())
        .map(|i| {
            let (code, text) = Cluster::http_get(&format!("{}/metrics", c.node_http_url(i)));
            assert_eq!(code, 200, "{text}");
            text.lines()
                .filter(|l| {
                    l.starts_with("dfs_node_received_bytes_total")
                        || l.starts_with("dfs_node_sent_bytes_total")
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>() as u64
        })
        .sum()
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[test]
fn copies_stay_inside_the_cluster_and_buckets_carry_schemes() {
    if !have("aws", &["--version"]) {
        return;
    }
    let mut c = Cluster::builder()
        .nodes(4)
        .replication(1)
        .parity("xor")
        .chunk_size(CHUNK)
        .http()
        .start();
    let ep = c.start_s3(AK, SK, &[]);
    let d = c.dir().to_path_buf();
    let d = d.as_path();
    aws_ok(d, &ep, &["s3", "mb", "s3://plain"]);

    // A single-PUT object of many chunks, copied with CopyObject: no chunk
    // byte moves between nodes and the gateway.
    let one = random_bytes(11, 3 * 1024 * 1024 + 4321);
    let p = c.scratch("one.bin");
    std::fs::write(&p, &one).unwrap();
    let p = p.display().to_string();
    aws_ok(
        d,
        &ep,
        &[
            "s3api",
            "put-object",
            "--bucket",
            "plain",
            "--key",
            "one",
            "--body",
            &p,
        ],
    );
    let before = data_path_bytes(&mut c);
    let out = aws_ok(
        d,
        &ep,
        &[
            "s3api",
            "copy-object",
            "--bucket",
            "plain",
            "--key",
            "one-copy",
            "--copy-source",
            "plain/one",
        ],
    );
    let moved = data_path_bytes(&mut c) - before;
    eprintln!("chunk bytes moved over the data path by a copy: {moved}");
    assert_eq!(moved, 0, "CopyObject moved chunk bytes over the network");
    assert!(out.contains(&md5_hex(&one)), "a copy keeps the ETag: {out}");
    c.get_exact("plain/one-copy", &one);

    // A multipart object (8 MiB parts), copied by `aws s3 cp` with
    // UploadPartCopy of 8 MiB ranges: the ranges fall on the parts' stripe
    // boundaries, so every part is copied by the nodes.
    let mp = random_bytes(12, 17 * 1024 * 1024 + 999);
    let p = c.scratch("mp.bin");
    std::fs::write(&p, &mp).unwrap();
    let p = p.display().to_string();
    aws_ok(d, &ep, &["s3", "cp", "--no-progress", &p, "s3://plain/mp"]);
    let before = data_path_bytes(&mut c);
    aws_ok(
        d,
        &ep,
        &[
            "s3",
            "cp",
            "--no-progress",
            "s3://plain/mp",
            "s3://plain/mp-copy",
        ],
    );
    let moved = data_path_bytes(&mut c) - before;
    eprintln!("chunk bytes moved over the data path by a copy: {moved}");
    assert_eq!(
        moved, 0,
        "a multipart copy moved chunk bytes over the network"
    );
    c.get_exact("plain/mp-copy", &mp);
    assert_eq!(c.stat("plain/mp-copy")["health"], "healthy");

    // UploadPartCopy of a range that cuts stripes: only the edges (less
    // than a stripe each) stream through the gateway.
    let up = json(&aws_ok(
        d,
        &ep,
        &[
            "s3api",
            "create-multipart-upload",
            "--bucket",
            "plain",
            "--key",
            "pc",
        ],
    ));
    let id = up["UploadId"].as_str().expect("UploadId").to_string();
    let (first, last) = (100_000usize, 9_000_000usize);
    let before = data_path_bytes(&mut c);
    let part = json(&aws_ok(
        d,
        &ep,
        &[
            "s3api",
            "upload-part-copy",
            "--bucket",
            "plain",
            "--key",
            "pc",
            "--upload-id",
            &id,
            "--part-number",
            "1",
            "--copy-source",
            "plain/mp",
            "--copy-source-range",
            &format!("bytes={first}-{last}"),
        ],
    ));
    let moved = data_path_bytes(&mut c) - before;
    eprintln!("chunk bytes moved over the data path by a copy: {moved}");
    let len = (last + 1 - first) as u64;
    // The edges go node -> gateway -> node (whole chunks read, the edges
    // and their parity stored); streaming the whole range would move more
    // than twice its length.
    assert!(
        moved > 0 && moved < len / 2,
        "a part copy of {len} bytes moved {moved} chunk bytes; only the edges (under a stripe each) should"
    );
    let etag = part["CopyPartResult"]["ETag"]
        .as_str()
        .expect("ETag")
        .to_string();
    let done = serde_json::json!({"Parts": [{"ETag": etag, "PartNumber": 1}]}).to_string();
    aws_ok(
        d,
        &ep,
        &[
            "s3api",
            "complete-multipart-upload",
            "--bucket",
            "plain",
            "--key",
            "pc",
            "--upload-id",
            &id,
            "--multipart-upload",
            &done,
        ],
    );
    c.get_exact("plain/pc", &mp[first..=last]);

    // Per-bucket protection: LocationConstraint names a scheme.
    aws_ok(
        d,
        &ep,
        &[
            "s3api",
            "create-bucket",
            "--bucket",
            "ecb",
            "--create-bucket-configuration",
            "LocationConstraint=rs:2+1",
        ],
    );
    let loc = aws_ok(d, &ep, &["s3api", "get-bucket-location", "--bucket", "ecb"]);
    assert!(loc.contains("rs:2+1"), "{loc}");
    aws_fails(
        d,
        &ep,
        SK,
        &[
            "s3api",
            "create-bucket",
            "--bucket",
            "bad",
            "--create-bucket-configuration",
            "LocationConstraint=rs:0+9",
        ],
        "InvalidLocationConstraint",
    );
    // A region name (what clients send by habit) means the default.
    aws_ok(
        d,
        &ep,
        &[
            "s3api",
            "create-bucket",
            "--bucket",
            "west",
            "--create-bucket-configuration",
            "LocationConstraint=us-west-2",
        ],
    );
    aws_ok(
        d,
        &ep,
        &[
            "s3api",
            "put-object",
            "--bucket",
            "ecb",
            "--key",
            "one",
            "--body",
            &c.scratch("one.bin").display().to_string(),
        ],
    );
    aws_ok(d, &ep, &["s3", "cp", "--no-progress", &p, "s3://ecb/mp"]);
    // Into a bucket of another scheme a copy is re-encoded.
    aws_ok(
        d,
        &ep,
        &[
            "s3",
            "cp",
            "--no-progress",
            "s3://plain/one",
            "s3://ecb/one-copy",
        ],
    );
    for (name, data) in [("ecb/one", &one), ("ecb/mp", &mp), ("ecb/one-copy", &one)] {
        let s = c.stat(name);
        assert_eq!(s["scheme"], "rs:2+1", "{name}: {s:#}");
        assert_eq!(s["health"], "healthy", "{name}: {s:#}");
        c.get_exact(name, data);
    }
    assert_ne!(c.stat("plain/one")["scheme"], "rs:2+1");
}

/// CRC-32 (IEEE), table-driven: the corruption below must keep it.
fn crc32(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let t = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0xEDB8_8320
                } else {
                    c >> 1
                };
            }
            *e = c;
        }
        t
    });
    !data.iter().fold(!0u32, |c, &b| {
        t[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8)
    })
}

/// Corrupts the stored bytes of a chunk file so that their CRC-32 stays the
/// same: the node's own cheap check on every read passes, and only the
/// reader's SHA-256 of the decoded bytes sees the damage. One byte is
/// flipped, then four others are chosen to restore the CRC (CRC-32 is
/// affine over GF(2): solve for the 32 bits).
fn corrupt_keeping_crc(path: &Path) {
    let mut f = std::fs::read(path).expect("read chunk file");
    assert!(
        &f[..8] == b"DFSCHNK1" || &f[..8] == b"DFSCHNK2",
        "{}",
        path.display()
    );
    let hl = u32::from_le_bytes(f[8..12].try_into().unwrap()) as usize;
    let body = 12 + hl;
    // The stored bytes end where the header says: owner tag records follow.
    let header: protocol::ChunkHeader =
        protocol::connection::decode(&f[12..body]).expect("chunk header");
    let end = body + header.stored_len as usize;
    let n = end - body;
    assert!(n >= 64, "chunk too short to corrupt");
    let want = crc32(&f[body..end]);
    f[body + n / 2] ^= 0x5A;
    let patch = body + 8;
    let base = crc32(&f[body..end]);
    // Basis of the effects of flipping each of the 32 patch bits, each with
    // the set of bits that produces it.
    let mut basis: Vec<(u32, u32)> = Vec::new();
    for bit in 0..32 {
        f[patch + bit / 8] ^= 1 << (bit % 8);
        let mut v = crc32(&f[body..end]) ^ base;
        f[patch + bit / 8] ^= 1 << (bit % 8);
        let mut m = 1u32 << bit;
        for &(bv, bm) in &basis {
            if v ^ bv < v {
                v ^= bv;
                m ^= bm;
            }
        }
        if v != 0 {
            basis.push((v, m));
            basis.sort_by_key(|b| std::cmp::Reverse(b.0));
        }
    }
    let (mut v, mut m) = (base ^ want, 0u32);
    for &(bv, bm) in &basis {
        if v ^ bv < v {
            v ^= bv;
            m ^= bm;
        }
    }
    assert_eq!(v, 0, "CRC-32 could not be restored");
    for bit in 0..32 {
        if m & (1 << bit) != 0 {
            f[patch + bit / 8] ^= 1 << (bit % 8);
        }
    }
    assert_eq!(crc32(&f[body..end]), want);
    std::fs::write(path, &f).expect("write corrupted chunk file");
}

/// An S3 GET reads through the same pipeline as `get`: a copy that fails
/// verification (corrupted so that the node's CRC misses it) is read
/// around, and the coordinator hears of it (`ReportBad`) and has the node
/// verify and quarantine it, exactly as after a `dfs-sim get`.
#[test]
fn s3_get_reports_a_bad_copy_to_the_coordinator() {
    if !have("aws", &["--version"]) {
        return;
    }
    let mut c = cluster();
    let ep = c.start_s3(AK, SK, &[]);
    let d = c.dir().to_path_buf();
    let d = d.as_path();
    aws_ok(d, &ep, &["s3", "mb", "s3://bad"]);
    let data = random_bytes(21, 3 * 1024 * 1024 + 777);
    let p = c.scratch("obj.bin");
    std::fs::write(&p, &data).unwrap();
    let p = p.display().to_string();
    aws_ok(
        d,
        &ep,
        &[
            "s3api",
            "put-object",
            "--bucket",
            "bad",
            "--key",
            "obj",
            "--body",
            &p,
        ],
    );
    let st = c.stat("bad/obj");
    let chunk = chunk_of(&st, 0, Some(0));
    let id = chunk["id"].as_str().unwrap().to_string();
    // The first holder listed is the copy a reader tries first.
    let node = Cluster::node_index(&holders(chunk)[0]);
    corrupt_keeping_crc(&c.chunk_path(node, &id));

    let back = c.scratch("obj.back");
    aws_ok(
        d,
        &ep,
        &[
            "s3api",
            "get-object",
            "--bucket",
            "bad",
            "--key",
            "obj",
            &back.display().to_string(),
        ],
    );
    assert_same_bytes(
        &std::fs::read(&back).unwrap(),
        &data,
        "GET around a bad copy",
    );
    let log = c.dir().join("coord.log");
    wait_until(DEADLINE, "the coordinator hears of the bad copy", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains("reader reported a bad copy") && l.contains(&id))
    });
    // Ordered to verify, the node finds the SHA-256 mismatch and sets the
    // copy aside.
    let q = c.node_data_dir(node).join("quarantine");
    wait_until(DEADLINE, "the node quarantines the bad copy", || {
        std::fs::read_dir(&q)
            .map(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().contains(&id))
            })
            .unwrap_or(false)
    });
}
