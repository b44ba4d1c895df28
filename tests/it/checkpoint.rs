//! Checkpoint reading and writing against torch itself: fixtures are made
//! live by `tests/checkpoint/make_fixtures.py` with torch.save (from the
//! test-only environment `scripts/test-env` installs), read by detc and
//! compared byte for byte; files detc writes are read back by
//! `torch.load(weights_only=True)` and MMEngine's `_load_checkpoint`.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use detc::checkpoint::{self, DType, ErrorKind, TensorData, Value};
use indexmap::IndexMap;
use serde_json::Value as Json;

use crate::support::{python, root};


/// The fixture folder, made once per test run.
fn fixtures() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = Command::new(python())
            .arg(root().join("tests/checkpoint/make_fixtures.py"))
            .arg(dir.path())
            .output()
            .expect("python starts");
        assert!(
            out.status.success(),
            "make_fixtures.py failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
    .path()
}

/// What torch says the state dict of `fixture` holds, with its bytes.
fn expected(fixture: &str) -> Vec<(String, String, Vec<i64>, Vec<u8>)> {
    let json: Json =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json")).unwrap())
            .unwrap();
    let blob = std::fs::read(fixtures().join("expected.bin")).unwrap();
    json[fixture]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let (offset, len) = (
                e["offset"].as_u64().unwrap() as usize,
                e["len"].as_u64().unwrap() as usize,
            );
            let shape = e["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_i64().unwrap())
                .collect();
            (
                e["name"].as_str().unwrap().to_string(),
                e["dtype"].as_str().unwrap().to_string(),
                shape,
                blob[offset..offset + len].to_vec(),
            )
        })
        .collect()
}

fn assert_matches_torch(fixture: &str, state_dict: &IndexMap<String, TensorData>) {
    let expected = expected(fixture);
    let names: Vec<&str> = state_dict.keys().map(String::as_str).collect();
    let expected_names: Vec<&str> = expected.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(names, expected_names, "{fixture}: names");
    for ((name, dtype, shape, data), tensor) in expected.iter().zip(state_dict.values()) {
        assert_eq!(
            tensor.dtype.torch_name(),
            dtype,
            "{fixture}: dtype of {name}"
        );
        assert_eq!(&tensor.shape, shape, "{fixture}: shape of {name}");
        assert!(tensor.data == *data, "{fixture}: bytes of {name} differ");
    }
}

#[test]
fn every_dtype_views_and_shared_storages_read_as_torch_saved_them() {
    let ckpt = checkpoint::load(&fixtures().join("dtypes.pth")).unwrap();
    assert_matches_torch("dtypes.pth", &ckpt.state_dict);
    assert_eq!(ckpt.other, Value::None);
    assert_eq!(ckpt.state_dict["scalar"].shape, Vec::<i64>::new());
    let dtypes: Vec<DType> = ckpt.state_dict.values().map(|t| t.dtype).collect();
    assert!(DType::ALL.iter().all(|d| dtypes.contains(d)));
}

#[test]
fn module_state_dict_ordered_dict_with_metadata() {
    let ckpt = checkpoint::load(&fixtures().join("module.pth")).unwrap();
    assert_matches_torch("module.pth", &ckpt.state_dict);
    assert!(ckpt.state_dict.contains_key("1.num_batches_tracked"));
}

#[test]
fn state_dict_under_model_key_or_missing() {
    let ckpt = checkpoint::load(&fixtures().join("model_key.pth")).unwrap();
    assert_matches_torch("model_key.pth", &ckpt.state_dict);
    assert_eq!(
        ckpt.other,
        Value::Dict(vec![(Value::Str("epoch".into()), Value::Int(3))])
    );
    let err = checkpoint::load(&fixtures().join("no_weights.pth")).unwrap_err();
    assert!(err.to_string().ends_with("no state dict found: the top-level dict is not all tensors and has no `state_dict` or `model` (keys: `epoch`, `note`)"), "{err}");
}

#[test]
fn missing_and_unexpected_keys_as_mmengine_reports_them() {
    let full = checkpoint::load(&fixtures().join("module.pth"))
        .unwrap()
        .state_dict;
    let model: Vec<(String, Vec<i64>)> = full
        .iter()
        .map(|(k, t)| (k.clone(), t.shape.clone()))
        .collect();
    let model = || model.iter().map(|(k, s)| (k.as_str(), s.as_slice()));
    let mut loaded = full.clone();
    loaded.shift_remove("3.bias");
    loaded.shift_remove("1.num_batches_tracked");
    let zeros = |shape: Vec<i64>| {
        TensorData::new(
            DType::F32,
            shape.clone(),
            vec![0; 4 * shape.iter().product::<i64>() as usize],
        )
        .unwrap()
    };
    loaded.insert("extra.weight".into(), zeros(vec![2]));
    loaded.insert("3.scale".into(), zeros(vec![1]));
    let report = checkpoint::compare(model(), &loaded);
    let expected = std::fs::read_to_string(fixtures().join("mmengine_key_warning.txt")).unwrap();
    assert_eq!(report.warning().as_deref(), Some(expected.as_str()));
    assert!(report.mismatched.is_empty());
    // A shape mismatch names the key and both shapes, in torch's words.
    loaded.insert("0.weight".into(), zeros(vec![4, 3, 1, 1]));
    let report = checkpoint::compare(model(), &loaded);
    assert_eq!(
        report.mismatched[0].to_string(),
        "size mismatch for 0.weight: copying a param with shape [4, 3, 1, 1] from checkpoint, the shape in current model is [4, 3, 3, 3]"
    );
    assert!(checkpoint::compare(model(), &full).is_exact());
}

#[test]
fn torchvision_style_resnet18() {
    let ckpt = checkpoint::load(&fixtures().join("resnet18.pth")).unwrap();
    assert_matches_torch("resnet18.pth", &ckpt.state_dict);
    assert_eq!(ckpt.state_dict.len(), 122);
    assert_eq!(
        ckpt.state_dict["layer2.0.downsample.0.weight"].shape,
        vec![128, 64, 1, 1]
    );
}

#[test]
fn legacy_format() {
    let ckpt = checkpoint::load(&fixtures().join("legacy.pth")).unwrap();
    assert_matches_torch("legacy.pth", &ckpt.state_dict);
}

#[test]
fn safetensors_by_hand() {
    let ckpt = checkpoint::load(&fixtures().join("tensors.safetensors")).unwrap();
    assert_matches_torch("tensors.safetensors", &ckpt.state_dict);
}

#[test]
fn mmengine_checkpoint_with_arbitrary_meta() {
    let ckpt = checkpoint::load(&fixtures().join("mmengine.pth")).unwrap();
    // `module.` prefixes are stripped as MMEngine's revise_keys does.
    assert_matches_torch("mmengine.pth", &ckpt.state_dict);
    let meta = ckpt.other.get("meta").expect("meta kept");
    assert_eq!(meta.get("epoch"), Some(&Value::Int(12)));
    assert_eq!(meta.get("seed"), Some(&Value::Int((1 << 40) + 3)));
    assert_eq!(
        meta.get("big"),
        Some(&Value::BigInt(vec![0, 0, 0, 0, 0, 0, 0, 0, 0x40]))
    );
    assert_eq!(meta.get("neg"), Some(&Value::Int(-5)));
    assert_eq!(meta.get("lr"), Some(&Value::Float(1e-4)));
    assert_eq!(meta.get("time"), Some(&Value::None));
    assert_eq!(
        meta.get("raw"),
        Some(&Value::Bytes(b"\x00\xffbytes".to_vec()))
    );
    assert_eq!(
        meta.get("flags"),
        Some(&Value::Tuple(vec![Value::Bool(true), Value::Bool(false)]))
    );
    assert!(matches!(meta.get("tags"), Some(Value::Set(s)) if s.len() == 2));
    let Some(Value::Object {
        module, name, args, ..
    }) = meta.get("np_float")
    else {
        panic!("numpy scalar: {:?}", meta.get("np_float"))
    };
    assert_eq!(
        (module.as_str(), name.as_str()),
        ("numpy.core.multiarray", "scalar")
    );
    assert_eq!(args[1], Value::Bytes(0.25f64.to_le_bytes().to_vec()));
    assert!(
        matches!(meta.get("np_array"), Some(Value::Object { name, state: Some(_), .. }) if name == "_reconstruct")
    );
    assert!(matches!(meta.get("counter"), Some(Value::Object { name, .. }) if name == "Counter"));
    let classes = meta.get("dataset_meta").and_then(|d| d.get("classes"));
    assert_eq!(
        classes,
        Some(&Value::Tuple(vec![
            Value::Str("square".into()),
            Value::Str("circle".into())
        ]))
    );
    let c = meta
        .get("nested")
        .and_then(|n| n.get("a"))
        .and_then(|a| a.get("b"))
        .and_then(|b| b.get("c"));
    assert_eq!(
        c,
        Some(&Value::List(vec![
            Value::Int(1),
            Value::Float(2.5),
            Value::Str("three".into()),
            Value::None
        ]))
    );
    let pair = Value::List(vec![Value::Int(1), Value::Int(2)]);
    assert_eq!(
        meta.get("shared"),
        Some(&Value::List(vec![pair.clone(), pair]))
    );
    // A custom class stays an opaque object with its state.
    let Some(Value::Object {
        module,
        name,
        state: Some(state),
        ..
    }) = meta.get("history")
    else {
        panic!("HistoryBuffer stand-in: {:?}", meta.get("history"))
    };
    assert_eq!(
        (module.as_str(), name.as_str()),
        ("__main__", "HistoryBuffer")
    );
    assert_eq!(state.get("max_length"), Some(&Value::Int(1_000_000)));
    // So does MMEngine's own MessageHub state.
    let hub = ckpt.other.get("message_hub").expect("message_hub kept");
    let buffer = hub.get("log_scalars").and_then(|l| l.get("train/lr"));
    let Some(Value::Object {
        module,
        name,
        state: Some(_),
        ..
    }) = buffer
    else {
        panic!("HistoryBuffer: {buffer:?}")
    };
    assert_eq!(
        (module.as_str(), name.as_str()),
        ("mmengine.logging.history_buffer", "HistoryBuffer")
    );
    assert_eq!(
        hub.get("runtime_info").and_then(|r| r.get("iter")),
        Some(&Value::Int(10))
    );
    // Optimizer state keeps its tensors.
    let momentum = ckpt
        .other
        .get("optimizer")
        .and_then(|o| o.get("state"))
        .and_then(|s| match s {
            Value::Dict(items) => items.first().map(|(_, v)| v),
            _ => None,
        });
    let Some(Value::Tensor(t)) = momentum.and_then(|m| m.get("momentum_buffer")) else {
        panic!("momentum: {momentum:?}")
    };
    assert_eq!((t.dtype, t.shape.clone()), (DType::F32, vec![4, 3, 3, 3]));
    assert!(ckpt.other.get("state_dict").is_none());
}

#[test]
fn written_pth_reads_back_in_torch_and_mmengine() {
    let source = checkpoint::load(&fixtures().join("dtypes.pth")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let meta = Value::Dict(vec![
        (Value::Str("epoch".into()), Value::Int(3)),
        (Value::Str("big".into()), Value::Int(-(1 << 40))),
        (Value::Str("lr".into()), Value::Float(0.5)),
        (Value::Str("raw".into()), Value::Bytes(vec![0, 200, 255])),
        (
            Value::Str("classes".into()),
            Value::Tuple(vec![Value::Str("a".into()), Value::Str("b".into())]),
        ),
        (
            Value::Str("ok".into()),
            Value::List(vec![Value::Bool(true), Value::None]),
        ),
    ]);
    let with_meta = dir.path().join("with_meta.pth");
    let bare = dir.path().join("bare.pth");
    checkpoint::save_pth(&with_meta, &source.state_dict, Some(&meta)).unwrap();
    checkpoint::save_pth(&bare, &source.state_dict, None).unwrap();
    // Our own reader agrees, and no temporary file is left behind.
    assert_eq!(
        checkpoint::load(&with_meta).unwrap().state_dict,
        source.state_dict
    );
    assert_eq!(
        checkpoint::load(&bare).unwrap().state_dict,
        source.state_dict
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    let out = Command::new(python())
        .arg(root().join("tests/checkpoint/check_written.py"))
        .args([&with_meta, &bare, &fixtures().join("dtypes.pth")])
        .output()
        .expect("python starts");
    assert!(
        out.status.success(),
        "check_written.py:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn safetensors_round_trip() {
    let source = checkpoint::load(&fixtures().join("tensors.safetensors")).unwrap();
    let path = tempfile::tempdir().unwrap().keep().join("t.safetensors");
    checkpoint::safetensors::write(&path, &source.state_dict, None).unwrap();
    assert_eq!(
        checkpoint::load(&path).unwrap().state_dict,
        source.state_dict
    );
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

#[test]
fn broken_files_are_errors_that_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(fixtures().join("module.pth")).unwrap();
    let cases: Vec<(&str, Vec<u8>, ErrorKind)> = vec![
        ("empty.pth", Vec::new(), ErrorKind::Format),
        (
            "text.pth",
            b"hello, not a checkpoint".to_vec(),
            ErrorKind::Format,
        ),
        (
            "truncated.pth",
            good[..good.len() / 2].to_vec(),
            ErrorKind::Format,
        ),
        (
            "garbage_pickle.pth",
            vec![0x80, 2, b'}', b'q', 0, b'(', b'X', 0xff, 0xff, 0xff, 0x7f],
            ErrorKind::Format,
        ),
        (
            "bad.safetensors",
            vec![8, 0, 0, 0, 0, 0, 0, 0, b'{', b'}'],
            ErrorKind::Format,
        ),
        ("short.safetensors", vec![0xff; 20], ErrorKind::Format),
    ];
    for (name, bytes, kind) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let err = checkpoint::load(&path).expect_err(name);
        assert_eq!(err.kind, kind, "{name}: {err}");
        assert!(err.to_string().contains(name), "{err}");
    }
    let missing = checkpoint::load(&dir.path().join("missing.pth")).unwrap_err();
    assert_eq!(missing.kind, ErrorKind::Io);
}

/// A xorshift stream: deterministic "random" bytes without a dependency.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// `source` with its `data.pkl` replaced, as a new zip.
fn with_pickle(source: &Path, pickle: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut zip = zip::ZipArchive::new(std::fs::File::open(source).unwrap()).unwrap();
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).unwrap();
        let name = entry.name().to_string();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        let options =
            zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Stored);
        out.start_file(name.clone(), options).unwrap();
        out.write_all(if name.ends_with("/data.pkl") {
            pickle
        } else {
            &data
        })
        .unwrap();
    }
    out.finish().unwrap().into_inner()
}

fn data_pkl(source: &Path) -> Vec<u8> {
    use std::io::Read;
    let mut zip = zip::ZipArchive::new(std::fs::File::open(source).unwrap()).unwrap();
    let name = zip
        .file_names()
        .find(|n| n.ends_with("/data.pkl"))
        .unwrap()
        .to_string();
    let mut data = Vec::new();
    zip.by_name(&name).unwrap().read_to_end(&mut data).unwrap();
    data
}

#[test]
fn corrupted_checkpoints_never_panic() {
    let source = fixtures().join("mmengine.pth");
    let pickle = data_pkl(&source);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fuzz.pth");
    let mut state = 0x2545_f491_4f6c_dd1du64;
    // Mutated and truncated pickles, through the whole reader (storages included).
    let mut errors = 0;
    for round in 0..400 {
        let mut bytes = pickle.clone();
        if round % 4 == 0 {
            bytes.truncate((xorshift(&mut state) % bytes.len() as u64) as usize);
        }
        for _ in 0..1 + round % 3 {
            let at = (xorshift(&mut state) % bytes.len().max(1) as u64) as usize;
            if let Some(b) = bytes.get_mut(at) {
                *b = (xorshift(&mut state) >> 32) as u8;
            }
        }
        std::fs::write(&path, with_pickle(&source, &bytes)).unwrap();
        if let Err(e) = checkpoint::load(&path) {
            assert!(e.to_string().contains("fuzz.pth"), "{e}");
            errors += 1;
        }
    }
    assert!(
        errors > 100,
        "only {errors} of 400 corrupted pickles were rejected"
    );
    // Truncated or corrupted zips.
    let good = std::fs::read(&source).unwrap();
    for _ in 0..100 {
        let mut bytes = good.clone();
        let at = (xorshift(&mut state) % bytes.len() as u64) as usize;
        bytes[at] ^= 1 + (xorshift(&mut state) % 255) as u8;
        bytes.truncate(bytes.len() - (xorshift(&mut state) % 3) as usize * 100);
        std::fs::write(&path, &bytes).unwrap();
        let _ = checkpoint::load(&path);
    }
    // The pickle machine alone on random bytes.
    for len in 0..3000 {
        let bytes: Vec<u8> = (0..len % 80)
            .map(|_| (xorshift(&mut state) >> 24) as u8)
            .collect();
        let _ = checkpoint::pickle::load(&bytes);
    }
}

#[test]
fn every_pickle_protocol_reads_the_same_value() {
    let s = |t: &str| Value::Str(t.into());
    let ints = [
        0,
        1,
        -1,
        255,
        256,
        65535,
        65536,
        -(1 << 31),
        1 << 31,
        i64::MAX,
        i64::MIN,
    ]
    .map(Value::Int);
    let mut ints = ints.to_vec();
    ints.push(Value::BigInt(vec![0, 0, 0, 0, 0, 0, 0, 0, 1]));
    ints.push(Value::BigInt(vec![
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xf0,
    ]));
    let one = Value::List(vec![Value::Int(1)]);
    let expected = Value::Dict(vec![
        (s("int"), Value::List(ints)),
        (
            s("float"),
            Value::List([0.0, -1.5, 1e300, f64::INFINITY].map(Value::Float).to_vec()),
        ),
        (
            s("str"),
            Value::List(vec![s(""), s("ascii"), s("é ü 漢字 \n\\ 🎉")]),
        ),
        (s("bytes"), Value::Bytes(vec![0, 1, 0xff])),
        (s("none"), Value::None),
        (
            s("bools"),
            Value::List(vec![Value::Bool(true), Value::Bool(false)]),
        ),
        (
            s("tuples"),
            Value::List(vec![
                Value::Tuple(vec![]),
                Value::Tuple(vec![Value::Int(1)]),
                Value::Tuple((1..=4).map(Value::Int).collect()),
            ]),
        ),
        (
            s("od"),
            Value::Dict(vec![(s("z"), Value::Int(1)), (s("a"), Value::Int(2))]),
        ),
        (s("set"), Value::Set(vec![Value::Int(3)])),
        (s("frozenset"), Value::FrozenSet(vec![Value::Int(4)])),
        (
            s("nested"),
            Value::Dict(vec![(
                s("l"),
                Value::List(vec![one.clone(), Value::Dict(vec![(s("k"), s("v"))])]),
            )]),
        ),
        (s("shared"), Value::List(vec![one.clone(), one])),
    ]);
    for protocol in 0..=5 {
        let bytes = std::fs::read(fixtures().join(format!("plain_p{protocol}.pkl"))).unwrap();
        let value =
            checkpoint::pickle::load(&bytes).unwrap_or_else(|e| panic!("protocol {protocol}: {e}"));
        assert_eq!(value, expected, "protocol {protocol}");
    }
}

#[test]
fn garbage_pickle_error_names_offset_and_opcode() {
    let err = checkpoint::pickle::load(&[0x80, 2, b'}', b'(', b'X', 5, 0, 0, 0, b'a']).unwrap_err();
    assert_eq!((err.offset, err.opcode), (4, Some(b'X')));
    assert_eq!(
        err.to_string(),
        "pickle byte 4, opcode BINUNICODE (0x58): length 5 runs past the end of the pickle"
    );
    let err = checkpoint::pickle::load(&[0x80, 2, b'N', 0xfe]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "pickle byte 3, opcode unknown (0xfe): unknown opcode"
    );
    let err = checkpoint::pickle::load(&[b']', b'h', 9, b'.']).unwrap_err();
    assert_eq!(
        err.to_string(),
        "pickle byte 1, opcode BINGET (0x68): memo key 9 was never stored"
    );
    // A list that contains itself is an error, not an endless loop.
    let err = checkpoint::pickle::load(&[b']', b'q', 0, b'h', 0, b'a', b'.']).unwrap_err();
    assert!(err.message.contains("cycle"), "{err}");
    // Calling with one shared big tuple again and again is bounded, not a memory bomb.
    let mut bomb = b"cbuiltins\nlen\nq\x00(".to_vec();
    bomb.extend([b'K', 0].repeat(1000));
    bomb.extend(b"tq\x01");
    bomb.extend(b"h\x00h\x01R0".repeat(100_000));
    bomb.extend(b"N.");
    let err = checkpoint::pickle::load(&bomb).unwrap_err();
    assert!(err.message.contains("copies too many"), "{err}");
    // Deep but legitimate nesting loads, through the .pth reader too.
    let mut deep = Value::Int(1);
    for _ in 0..150 {
        deep = Value::List(vec![deep]);
    }
    let path = tempfile::tempdir().unwrap().keep().join("deep.pth");
    checkpoint::save_pth(&path, &IndexMap::new(), Some(&deep)).unwrap();
    assert_eq!(
        checkpoint::load(&path).unwrap().other.get("meta"),
        Some(&deep)
    );
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}
