//! Every flag of the example programs whose clap structs live in `code2nl::cli` is well
//! formed (clap's own debug assertions) and documented in `--help`.

use clap::CommandFactory;
use code2nl::cli;

/// Checks one command: clap's consistency assertions, then help text on every argument.
fn check(mut command: clap::Command) {
    command.build();
    command.clone().debug_assert();
    let name = command.get_name().to_string();
    assert!(command.get_about().is_some(), "{name} has no about text");
    let mut flags = 0;
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        if id == "help" || id == "version" {
            continue;
        }
        flags += 1;
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        assert!(
            !help.trim().is_empty(),
            "{name}: flag --{id} has no help text"
        );
    }
    assert!(flags > 0, "{name} has no flag");
    let rendered = command.render_long_help().to_string();
    for arg in command.get_arguments().filter(|a| !a.is_hide_set()) {
        if let Some(long) = arg.get_long() {
            assert!(
                rendered.contains(&format!("--{long}")),
                "{name}: --{long} missing from --help"
            );
        }
    }
}

#[test]
fn every_example_flag_is_documented() {
    check(cli::pipeline::PipelineArgs::command());
    check(cli::sweep::SweepArgs::command());
    check(cli::train::TrainArgs::command());
    check(cli::evaluate::EvaluateArgs::command());
    check(cli::predict::PredictArgs::command());
    check(cli::prepare::PrepareArgs::command());
    check(cli::bleu::BleuArgs::command());
}

#[test]
fn train_flags_reach_the_overrides() {
    use clap::Parser;
    let args = cli::train::TrainArgs::try_parse_from([
        "train",
        "--epochs",
        "3",
        "--padding",
        "dynamic",
        "--precision",
        "bf16",
        "--no-shuffle",
        "--lr",
        "0.001",
    ])
    .unwrap();
    let o = args.overrides();
    assert_eq!((o.epochs, o.lr, o.no_shuffle), (Some(3), Some(0.001), true));
    assert_eq!(o.padding, Some(code2nl::data::Padding::Dynamic));
    assert_eq!(o.precision, Some(code2nl::train::config::Precision::Bf16));
    let o = cli::train::TrainArgs::try_parse_from(["train", "--adam-eps", "1e-6"])
        .unwrap()
        .overrides();
    let mut config = code2nl::train::config::TrainConfig::default();
    config.apply(&o);
    assert_eq!(config.adam_eps, 1e-6);
    assert!(cli::train::TrainArgs::try_parse_from([
        "train",
        "--epochs",
        "1",
        "--train-steps",
        "2"
    ])
    .is_err());
}

#[test]
fn resume_without_a_config_takes_the_saved_settings() {
    use clap::Parser;
    use code2nl::train::config::TrainConfig;
    let out = tempfile::tempdir().unwrap();
    let last = out.path().join("checkpoint-last");
    std::fs::create_dir_all(&last).unwrap();
    let saved = TrainConfig {
        lr: 3e-4,
        grad_accum: 2,
        batch_size: 8,
        stop_after: Some(3),
        ..TrainConfig::default()
    };
    saved.save_json(&last.join("train_config.json")).unwrap();
    let dir = out.path().to_str().unwrap();
    let resolve = |extra: &[&str]| {
        let mut argv = vec!["train", "--resume", "--output-dir", dir];
        argv.extend_from_slice(extra);
        cli::train::TrainArgs::try_parse_from(argv)
            .unwrap()
            .resolve_config()
            .unwrap()
    };
    let plain = resolve(&[]);
    assert_eq!((plain.config.lr, plain.config.grad_accum), (3e-4, 2));
    assert_eq!(
        plain.config.stop_after, None,
        "the saved stop is not repeated"
    );
    assert!(plain.notes.iter().any(|n| n.contains("stopped after 3")));
    let split_again = resolve(&["--stop-after", "5", "--lr", "3e-4"]);
    assert_eq!(split_again.config.stop_after, Some(5));
    assert!(!split_again
        .notes
        .iter()
        .any(|n| n.contains("stopped after")));
    // A resume's weights come from checkpoint-last: another --init is noted, not recorded.
    let other_init = resolve(&["--init", "some/other-model"]);
    assert_eq!(other_init.config.init, saved.init);
    assert!(other_init
        .notes
        .iter()
        .any(|n| n.contains("--init some/other-model does nothing on a resume")));
    let same_init = resolve(&["--init", &saved.init]);
    assert!(!same_init.notes.iter().any(|n| n.contains("does nothing")));
    // A crash between a save's two renames left no checkpoint-last: the run's own copy.
    std::fs::rename(&last, out.path().join(".checkpoint-last.old")).unwrap();
    assert!(resolve(&[])
        .notes
        .iter()
        .any(|n| n.contains("no saved settings")));
    saved
        .save_json(&out.path().join("train_config.json"))
        .unwrap();
    let from_run = resolve(&[]);
    assert_eq!(from_run.config.lr, 3e-4);
    // Without --resume the saved settings are not read.
    let fresh = cli::train::TrainArgs::try_parse_from(["train", "--output-dir", dir])
        .unwrap()
        .resolve_config()
        .unwrap();
    assert_eq!(fresh.config.lr, TrainConfig::default().lr);
    assert!(fresh.notes.is_empty());
}

#[test]
fn eval_steps_takes_run_py_negative_values() {
    use clap::Parser;
    let eval_steps = |value: &str| {
        cli::train::TrainArgs::try_parse_from(["train", "--eval-steps", value])
            .map(|a| a.overrides().eval_steps)
            .map_err(|e| e.to_string())
    };
    assert_eq!(eval_steps("400"), Ok(Some(400)));
    // run.py's default: (global_step + 1) % -1 == 0 after every update.
    assert_eq!(eval_steps("-1"), Ok(Some(1)));
    assert_eq!(eval_steps("-4"), Ok(Some(4)));
    let err = eval_steps("0").unwrap_err();
    assert!(err.contains("must not be 0"), "{err}");
    let pipeline =
        cli::pipeline::PipelineArgs::try_parse_from(["pipeline", "--eval-steps", "-1"]).unwrap();
    assert_eq!(pipeline.eval_steps, Some(1));
}

#[test]
fn evaluate_prefix_names_files_without_folders() {
    use clap::Parser;
    let prefix = |args: &[&str]| {
        cli::evaluate::EvaluateArgs::try_parse_from(
            ["evaluate", "--checkpoint", "c", "--data", "d"]
                .iter()
                .chain(args),
        )
        .map(|a| a.prefix)
    };
    assert_eq!(prefix(&[]).unwrap(), "test");
    assert_eq!(prefix(&["--prefix", "test_1"]).unwrap(), "test_1");
    assert!(prefix(&["--prefix", "../x"]).is_err());
    assert!(prefix(&["--prefix", ""]).is_err());
}

#[test]
fn pipeline_flags_reach_the_config() {
    use clap::Parser;
    let args = cli::pipeline::PipelineArgs::try_parse_from([
        "pipeline",
        "--lang",
        "go",
        "--data-dir",
        "d",
        "--train-split",
        "valid",
        "--preset",
        "small",
        "--train-steps",
        "7",
        "--lr",
        "0.01",
        "--set",
        "padding=reference",
        "--set",
        "warmup_steps=3",
        "--test-limit",
        "5",
        "--quiet",
    ])
    .unwrap();
    let cfg = args.into_config().unwrap();
    assert_eq!(cfg.lang, "go");
    assert_eq!(cfg.output_dir, std::path::PathBuf::from("runs/pipeline-go"));
    assert_eq!(cfg.preset, Some(code2nl::train::pipeline::Preset::Small));
    assert_eq!(cfg.test_limit, Some(5));
    assert!(!cfg.progress);
    assert_eq!(cfg.train["train_steps"], 7);
    assert_eq!(cfg.train["lr"], 0.01);
    assert_eq!(cfg.train["padding"], "reference");
    assert_eq!(cfg.train["warmup_steps"], 3);
    assert!(cli::pipeline::parse_assignment("novalue").is_err());
    // A --set that contradicts a dedicated flag is refused; one that agrees is fine.
    let with = |set: &str| {
        cli::pipeline::PipelineArgs::try_parse_from(["pipeline", "--beam-size", "1", "--set", set])
            .unwrap()
            .into_config()
    };
    let err = with("beam_size=3").unwrap_err().to_string();
    assert!(
        err.contains("--set beam_size=3 contradicts --beam-size 1"),
        "{err}"
    );
    assert_eq!(with("beam_size=1").unwrap().train["beam_size"], 1);
    let lr =
        cli::pipeline::PipelineArgs::try_parse_from(["pipeline", "--lr", "1", "--set", "lr=1"])
            .unwrap()
            .into_config();
    assert!(lr.is_ok(), "--lr 1 and lr=1 agree: {:?}", lr.err());
}

#[test]
fn tie_order_flag_reaches_the_generation_config() {
    use clap::Parser;
    use code2nl::model::beam::TieOrder;
    let base = ["evaluate", "--checkpoint", "c", "--data", "d"];
    let args = cli::evaluate::EvaluateArgs::try_parse_from(base).unwrap();
    assert_eq!(TieOrder::from(args.tie_order), TieOrder::Auto);
    let args = cli::evaluate::EvaluateArgs::try_parse_from(
        base.iter().copied().chain(["--tie-order", "lower-index"]),
    )
    .unwrap();
    assert_eq!(TieOrder::from(args.tie_order), TieOrder::LowerIndex);
    let args = cli::predict::PredictArgs::try_parse_from([
        "predict",
        "--checkpoint",
        "c",
        "--tie-order",
        "torch-cpu",
    ])
    .unwrap();
    assert_eq!(TieOrder::from(args.tie_order), TieOrder::TorchCpu);
    assert!(cli::evaluate::EvaluateArgs::try_parse_from(
        base.iter().copied().chain(["--tie-order", "random"])
    )
    .is_err());
}

#[test]
fn zero_ranks_or_threads_are_refused_by_the_parser() {
    use clap::Parser;
    let evaluate = ["evaluate", "--checkpoint", "c", "--data", "d"];
    assert!(cli::evaluate::EvaluateArgs::try_parse_from(evaluate).is_ok());
    for n in ["0", "2"] {
        let with = |base: &[&'static str]| -> Vec<&'static str> {
            base.iter().copied().chain(["--world-size", n]).collect()
        };
        let ok = n != "0";
        assert_eq!(
            cli::evaluate::EvaluateArgs::try_parse_from(with(&evaluate)).is_ok(),
            ok
        );
        assert_eq!(
            cli::train::TrainArgs::try_parse_from(with(&["train"])).is_ok(),
            ok
        );
    }
    let sweep = ["sweep", "--grid", "g.toml", "--threads-per-run"];
    assert!(cli::sweep::SweepArgs::try_parse_from(sweep.iter().copied().chain(["1"])).is_ok());
    assert!(cli::sweep::SweepArgs::try_parse_from(sweep.iter().copied().chain(["0"])).is_err());
}

/// The defaults that `--help` states for flags without a clap default are the library's.
#[test]
fn stated_defaults_are_the_configs() {
    use clap::CommandFactory;
    let pipeline = code2nl::train::pipeline::PipelineConfig::default();
    let help = cli::pipeline::PipelineArgs::command()
        .render_long_help()
        .to_string();
    for stated in [
        format!("(default: {})", pipeline.train_split),
        format!("(default: {})", pipeline.dev_split),
        format!("(default: {})", pipeline.test_split),
        format!("(default: {})", pipeline.holdout),
        format!("{})", pipeline.hub_dataset),
    ] {
        assert!(help.contains(&stated), "pipeline --help lacks {stated}");
    }
    let train = code2nl::train::config::TrainConfig::default();
    let help = cli::train::TrainArgs::command()
        .render_long_help()
        .to_string();
    for stated in [
        format!("(default: {})", train.max_source_len),
        format!("(default: {})", train.max_target_len),
        format!("(default: {})", train.eval_steps.unwrap()),
    ] {
        assert!(help.contains(&stated), "train --help lacks {stated}");
    }
}

#[test]
fn a_zero_count_is_refused_in_words() {
    use clap::Parser;
    let err = cli::evaluate::EvaluateArgs::try_parse_from([
        "evaluate",
        "--checkpoint",
        "c",
        "--data",
        "d.jsonl",
        "--world-size",
        "0",
    ])
    .unwrap_err()
    .to_string();
    assert!(err.contains("must be at least 1"), "{err}");
    assert!(cli::evaluate::EvaluateArgs::try_parse_from([
        "evaluate",
        "--checkpoint",
        "c",
        "--data",
        "d.jsonl",
        "--batch-size",
        "2",
    ])
    .is_ok());
}

#[test]
fn sweep_gpus_give_each_running_child_its_own() {
    use clap::Parser;
    let parse = |argv: &[&str]| cli::sweep::SweepArgs::try_parse_from(argv);
    let args = parse(&["sweep", "--grid", "g.toml", "--gpus", "0,1"]).unwrap();
    assert_eq!(args.parallel(), 2, "one run per GPU by default");
    let seen: Vec<_> = (0..3).map(|slot| args.gpu_for_slot(slot)).collect();
    assert_eq!(seen, [Some("0"), Some("1"), Some("0")]);
    // Under a sweep that sees GPUs 4 and 5 only, --gpus 0,1 are those two.
    let visible = |slot| args.visible_device_for_slot(slot, Some("4,5")).unwrap();
    assert_eq!(
        (visible(0), visible(1)),
        (Some("4".into()), Some("5".into()))
    );
    assert_eq!(
        args.visible_device_for_slot(1, None).unwrap(),
        Some("1".into())
    );
    // A GPU the sweep cannot see is refused, not taken from the machine's numbering.
    let err = args.visible_device_for_slot(1, Some("4")).unwrap_err();
    assert!(err.contains("sees 1 GPU(s)"), "{err}");
    assert!(
        args.visible_device_for_slot(0, Some("")).is_err(),
        "no GPU visible"
    );
    let args = parse(&["sweep", "--grid", "g.toml", "--parallel", "3"]).unwrap();
    assert_eq!((args.parallel(), args.gpu_for_slot(0)), (3, None));
    assert_eq!(parse(&["sweep", "--grid", "g.toml"]).unwrap().parallel(), 1);
    let err = parse(&["sweep", "--grid", "g.toml", "--gpus", "0,x"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("`x` is not a GPU"), "{err}");
}

#[test]
fn a_dash_names_the_standard_streams_in_predict() {
    use clap::Parser;
    use std::path::PathBuf;
    let parse = |extra: &[&str]| {
        cli::predict::PredictArgs::try_parse_from(
            ["predict", "--checkpoint", "c"].iter().chain(extra),
        )
        .unwrap()
        .standard_streams_as_defaults()
    };
    let args = parse(&["--jsonl", "f.jsonl", "--output", "-"]);
    assert_eq!(args.output, None, "standard output");
    let args = parse(&["--jsonl", "f.jsonl", "--output", "./-"]);
    assert_eq!(args.output, Some(PathBuf::from("./-")), "a file called -");
    assert_eq!(parse(&["--file", "-"]).file, None, "standard input");
    assert_eq!(parse(&["--file", "a.rb"]).file, Some(PathBuf::from("a.rb")));
}
