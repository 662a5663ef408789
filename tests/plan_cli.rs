//! The offline `backfill-operator plan` command, run as users run it.

use std::process::{Command, Output};

fn plan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_backfill-operator"))
        .arg("plan")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn prints_one_utc_instant_per_line_across_daylight_saving() {
    let o = plan(&[
        "--cron",
        "30 2 * * *",
        "--time-zone",
        "America/New_York",
        "--from",
        "2026-03-07T00:00:00Z",
        "--to",
        "2026-03-10T00:00:00Z",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "2026-03-07T07:30:00Z\n2026-03-08T07:00:00Z\n2026-03-09T06:30:00Z\n"
    );
    assert!(stderr(&o).contains("(inclusive)") && stderr(&o).contains("(exclusive)"));
}

#[test]
fn prints_json_newest_first() {
    let o = plan(&[
        "--cron",
        "@hourly",
        "--from",
        "2026-01-01T00:00:00Z",
        "--count",
        "3",
        "--order",
        "desc",
        "-o",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let list: Vec<String> = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        list,
        [
            "2026-01-01T02:00:00Z",
            "2026-01-01T01:00:00Z",
            "2026-01-01T00:00:00Z"
        ]
    );
}

#[test]
fn bad_input_exits_non_zero_with_the_condition_message() {
    let cases: [(&[&str], &str); 4] = [
        (
            &[
                "--cron",
                "0 0 30 2 *",
                "--from",
                "2026-01-01T00:00:00Z",
                "--count",
                "1",
            ],
            "can never run",
        ),
        (
            &[
                "--cron",
                "0 0 * *",
                "--from",
                "2026-01-01T00:00:00Z",
                "--count",
                "1",
            ],
            "expected exactly 5 fields",
        ),
        (
            &[
                "--cron",
                "* * * * *",
                "--time-zone",
                "Atlantis/Capital",
                "--from",
                "2026-01-01T00:00:00Z",
                "--count",
                "1",
            ],
            "unknown time zone \"Atlantis/Capital\"",
        ),
        (
            &[
                "--cron",
                "* * * * *",
                "--from",
                "2026-13-01T00:00:00Z",
                "--count",
                "1",
            ],
            "not an RFC 3339 instant",
        ),
    ];
    for (args, want) in cases {
        let o = plan(args);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
        assert!(stdout(&o).is_empty());
    }
}

#[test]
fn plans_a_manifest_pair_with_filters_and_windows() {
    let o = plan(&[
        "-f",
        "examples/backfill-count-windows.yaml",
        "--schedule-file",
        "examples/schedule.yaml",
        "--now",
        "2026-11-23T12:00:00Z",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("execution windows"), "{}", stderr(&o));
    let text = stdout(&o);
    let sessions: Vec<jiff::Zoned> = text
        .lines()
        .map(|l| {
            l.parse::<jiff::Timestamp>()
                .unwrap()
                .in_tz("America/New_York")
                .unwrap()
        })
        .collect();
    // count: 60 weekday sessions at 02:30 New York time, newest first.
    assert_eq!(sessions.len(), 60);
    for pair in sessions.windows(2) {
        assert!(pair[0] > pair[1], "not newest first");
    }
    for s in &sessions {
        assert!(!matches!(
            s.weekday(),
            jiff::civil::Weekday::Saturday | jiff::civil::Weekday::Sunday
        ));
        assert_eq!((s.hour(), s.minute()), (2, 30), "{s}");
    }
}
