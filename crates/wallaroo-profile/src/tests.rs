use super::*;

// The profile is one per process and tests run in parallel: each test uses phase names of
// its own.

fn phase(name: &str) -> Phase {
    figures()
        .into_iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no phase {name}"))
}

#[tokio::test(flavor = "current_thread")]
async fn concurrent_entries_count_their_wall_time_once() {
    let a = within("t1 blobs", async {
        request();
        bytes(100);
        tokio::time::sleep(Duration::from_millis(100)).await;
    });
    let b = within("t1 blobs", async {
        request();
        bytes(20);
        tokio::time::sleep(Duration::from_millis(90)).await;
    });
    tokio::join!(a, b);
    let p = phase("t1 blobs");
    assert_eq!(p.entered, 2);
    assert_eq!(p.requests, 2);
    assert_eq!(p.bytes, 120);
    // The two overlap: the phase was busy about 100 ms, not 190.
    assert!(p.wall_ms >= 100.0 && p.wall_ms < 170.0, "{}", p.wall_ms);
}

#[tokio::test(flavor = "current_thread")]
async fn requests_go_to_the_innermost_phase_and_tasks_do_not_inherit() {
    within("t2 outer", async {
        request();
        within("t2 inner", async {
            request();
            bytes(7);
        })
        .await;
        request();
        // A spawned task is outside any phase.
        tokio::spawn(async { assert_eq!(current(), OTHER) })
            .await
            .unwrap();
    })
    .await;
    assert_eq!(phase("t2 outer").requests, 2);
    assert_eq!(phase("t2 inner").requests, 1);
    assert_eq!(phase("t2 inner").bytes, 7);
    assert_eq!(current(), OTHER);
}

#[test]
fn a_guard_times_a_stretch_of_code_and_records_the_peak_memory() {
    {
        let _g = enter("t3 spec load");
        std::thread::sleep(Duration::from_millis(20));
    }
    let p = phase("t3 spec load");
    assert!(p.wall_ms >= 20.0, "{}", p.wall_ms);
    assert_eq!(p.entered, 1);
    assert!(p.peak_rss_kb > 0, "Linux reports VmHWM");
    let before = figures().iter().position(|p| p.name == "t3 spec load");
    {
        let _g = enter("t3 later");
    }
    let after = figures().iter().position(|p| p.name == "t3 later");
    assert!(
        before < after,
        "phases are listed in the order first entered"
    );
}
