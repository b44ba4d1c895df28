//! The shim on this machine's libtorch: autocast regions on the CPU, and
//! CUDA memory statistics (`None` without a GPU, a peak after allocating on
//! one), and a Gloo process group of two ranks.

use tch::{Device, Kind, Tensor};

use super::autocast::{autocast_dtype, is_autocast_enabled};
use super::*;

#[test]
fn cpu_autocast_runs_matmul_in_bfloat16_and_restores_the_state() {
    let a = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).view([2, 2]);
    let b = Tensor::from_slice(&[0.5f32, -1.0, 1.5, 2.0]).view([2, 2]);
    assert!(!is_autocast_enabled(Device::Cpu).unwrap());
    let before = autocast_dtype(Device::Cpu).unwrap();
    let inside = autocast(Device::Cpu, Kind::BFloat16, || {
        assert!(is_autocast_enabled(Device::Cpu).unwrap());
        assert_eq!(autocast_dtype(Device::Cpu).unwrap(), Kind::BFloat16);
        a.matmul(&b)
    })
    .unwrap();
    assert_eq!(inside.kind(), Kind::BFloat16);
    // Autocast casts both operands to bfloat16, then multiplies.
    let want = a.to_kind(Kind::BFloat16).matmul(&b.to_kind(Kind::BFloat16));
    assert!(inside.equal(&want));
    assert_eq!(a.matmul(&b).kind(), Kind::Float);
    assert!(!is_autocast_enabled(Device::Cpu).unwrap());
    assert_eq!(autocast_dtype(Device::Cpu).unwrap(), before);
}

#[test]
fn nested_regions_restore_the_outer_one() {
    autocast(Device::Cpu, Kind::BFloat16, || {
        {
            let _off = AutocastGuard::enter(Device::Cpu, Kind::BFloat16, false).unwrap();
            assert!(!is_autocast_enabled(Device::Cpu).unwrap());
        }
        assert!(is_autocast_enabled(Device::Cpu).unwrap());
    })
    .unwrap();
    assert!(!is_autocast_enabled(Device::Cpu).unwrap());
}

#[test]
fn unsupported_devices_and_dtypes_are_errors() {
    assert!(autocast(Device::Mps, Kind::Half, || ()).is_err());
    let err = AutocastGuard::enter(Device::Cpu, Kind::Int64, true)
        .err()
        .unwrap();
    assert!(err.to_string().contains("not an autocast dtype"), "{err}");
}

#[test]
fn cuda_peak_memory_is_none_without_cuda_and_a_peak_with_it() {
    assert_eq!(cuda_peak_memory_mb(Device::Cpu), None);
    if !tch::Cuda::is_available() {
        assert_eq!(cuda_peak_memory_mb(Device::Cuda(0)), None);
        assert_eq!(cuda_max_memory_allocated(Device::Cuda(0)), Ok(None));
        assert_eq!(cuda_reset_peak_memory_stats(Device::Cuda(0)), Ok(false));
        return;
    }
    let gpu = Device::Cuda(0);
    // 64 MiB held, then 128 MiB more for a moment: the peak is at least 192 MiB.
    let held = Tensor::zeros([16 << 20], (Kind::Float, gpu));
    drop(Tensor::zeros([32 << 20], (Kind::Float, gpu)));
    assert!(cuda_peak_memory_mb(gpu).unwrap() >= 192);
    // Reset to what is held now.
    let after = cuda_peak_memory_mb(gpu).unwrap();
    assert!((64..192).contains(&after), "{after}");
    drop(held);
    let beyond = Device::Cuda(tch::Cuda::device_count() as usize);
    assert_eq!(cuda_peak_memory_mb(beyond), None);
}

#[test]
fn empty_cache_is_a_no_op_without_cuda_and_frees_cached_blocks_with_it() {
    assert_eq!(cuda_empty_cache(Device::Cpu), Ok(false));
    if !tch::Cuda::is_available() {
        assert_eq!(cuda_empty_cache(Device::Cuda(0)), Ok(false));
        return;
    }
    let gpu = Device::Cuda(0);
    drop(Tensor::zeros([16 << 20], (Kind::Float, gpu)));
    assert_eq!(cuda_empty_cache(gpu), Ok(true));
}

#[test]
fn cuda_events_time_the_device_or_fail_cleanly_without_one() {
    use super::timing::CudaEvent;
    if !tch::Cuda::is_available() {
        // A libtorch without CUDA, or a CUDA one on a machine without a GPU:
        // an error to report, not a crash.
        let err = CudaEvent::record(0).unwrap_err();
        assert_eq!(err.call, "cuda_event_record");
        assert!(!err.message.is_empty());
        return;
    }
    let gpu = Device::Cuda(0);
    let a = Tensor::rand([2048, 2048], (Kind::Float, gpu));
    let start = CudaEvent::record(0).unwrap();
    for _ in 0..8 {
        let _ = a.matmul(&a);
    }
    let end = CudaEvent::record(0).unwrap();
    let span = start.seconds_to(&end).unwrap();
    // Eight 2048^3 products: well above a microsecond, well below seconds.
    assert!(span > 1e-6 && span < 5.0, "{span}");
    assert_eq!(end.seconds_to(&end).unwrap(), 0.0);
}

#[test]
fn gloo_group_of_two_threads_runs_every_collective() {
    use std::os::fd::IntoRawFd;
    // Rank 0's store takes over a socket bound here, as the launcher passes it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut fd = Some(listener.into_raw_fd());
    let ranks: Vec<_> = (0..2)
        .map(|rank| {
            let rv = Rendezvous {
                master_addr: "127.0.0.1".into(),
                master_port: port,
                rank,
                world_size: 2,
                serve_store: true,
                listen_fd: if rank == 0 { fd.take() } else { None },
                timeout: std::time::Duration::from_secs(30),
                cuda_device: None,
            };
            std::thread::spawn(move || {
                let pg = ProcessGroup::join(&rv).unwrap();
                let r = rank as f64;
                let mut sum = Tensor::from_slice(&[1.0 + r, 10.0 * r]);
                pg.all_reduce_sum(&mut sum).unwrap();
                let mut from_one = Tensor::from_slice(&[r, r, r]);
                pg.broadcast(&mut from_one, 1).unwrap();
                let gathered = pg.all_gather(&Tensor::from_slice(&[r as i64, 7])).unwrap();
                pg.barrier().unwrap();
                (
                    Vec::<f64>::try_from(sum).unwrap(),
                    Vec::<f64>::try_from(from_one).unwrap(),
                    Vec::<i64>::try_from(gathered.flatten(0, -1)).unwrap(),
                )
            })
        })
        .collect();
    for handle in ranks {
        let (sum, from_one, gathered) = handle.join().unwrap();
        assert_eq!(sum, [3.0, 10.0]);
        assert_eq!(from_one, [1.0, 1.0, 1.0]);
        assert_eq!(gathered, [0, 7, 1, 7]);
    }
}

#[test]
fn rendezvous_errors_are_reported_not_thrown() {
    let rv = Rendezvous {
        master_addr: "127.0.0.1".into(),
        master_port: 1,
        rank: 3,
        world_size: 2,
        serve_store: true,
        listen_fd: None,
        timeout: std::time::Duration::from_secs(1),
        cuda_device: None,
    };
    let err = ProcessGroup::join(&rv).unwrap_err();
    assert!(
        err.message.contains("rank 3 is not in a world of 2"),
        "{err}"
    );
}

/// The engine is built with c10d's NCCL group whenever its libtorch has
/// CUDA (the PyPI wheel has); without a GPU, asking for it is an error
/// naming the cause, not a crash.
#[test]
fn nccl_group_is_built_with_a_cuda_libtorch_and_needs_a_gpu() {
    let cuda_libtorch = std::path::Path::new(env!("DETC_LIBTORCH_LIB"))
        .join("libtorch_cuda.so")
        .exists();
    assert_eq!(ProcessGroup::nccl_built(), cuda_libtorch);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let rv = Rendezvous {
        master_addr: "127.0.0.1".into(),
        master_port: port,
        rank: 0,
        world_size: 1,
        serve_store: true,
        listen_fd: None,
        timeout: std::time::Duration::from_secs(10),
        cuda_device: Some(0),
    };
    match ProcessGroup::join(&rv) {
        Ok(pg) => {
            assert!(tch::Cuda::is_available(), "an NCCL group without CUDA");
            let mut t = Tensor::from_slice(&[2.0f32]).to_device(tch::Device::Cuda(0));
            pg.all_reduce_sum(&mut t).unwrap();
            assert_eq!(Vec::<f32>::try_from(t.to_device(tch::Device::Cpu)).unwrap(), [2.0]);
        }
        Err(e) => {
            assert!(!tch::Cuda::is_available(), "{e}");
            let m = e.message.to_lowercase();
            assert!(m.contains("cuda") || m.contains("nccl"), "{e}");
        }
    }
}

