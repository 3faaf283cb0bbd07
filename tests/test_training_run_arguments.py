"""A run resumed across sessions keeps the arguments it started with."""
import json

import pytest
import torch

from contract.classes import NUM_CLASSES
from training.run_setup import ARGUMENTS_FILE, keep_run_arguments
from training.train import STUDENT_EPOCHS, parse_args, student_epochs


def start(tmp_path, *flags):
    keep_run_arguments(parse_args(["--output", str(tmp_path), "--image-size", "48x64", *flags]))


def test_a_resume_with_the_same_arguments_continues_whatever_the_machine(tmp_path):
    start(tmp_path)
    recorded = json.loads((tmp_path / ARGUMENTS_FILE).read_text())
    assert recorded["image_size"] == [48, 64] and "threads" not in recorded
    start(tmp_path, "--resume", "--threads", "1", "--checkpoint-minutes", "5")


def test_a_resume_under_another_input_size_or_schedule_stops_and_names_what_changed(tmp_path):
    start(tmp_path, "--views", "6", "--lr", "5e-4")
    with pytest.raises(SystemExit, match=r"--image-size was \[48, 64\], now \[60, 80\].*--lr was 0.0005, now 0.001"):
        start(tmp_path, "--resume", "--views", "6", "--image-size", "60x80", "--lr", "1e-3")
    with pytest.raises(SystemExit, match=r"--views was 6, now 12"):
        start(tmp_path, "--resume", "--lr", "5e-4", "--views", "12")


def test_a_finished_run_may_be_given_more_epochs(tmp_path):
    start(tmp_path, "--epochs", "1")
    start(tmp_path, "--resume", "--epochs", "2")


def test_a_fresh_start_in_the_same_folder_records_its_own_arguments(tmp_path):
    start(tmp_path, "--views", "3")
    start(tmp_path, "--views", "5")
    start(tmp_path, "--resume", "--views", "5")


def test_an_argument_added_after_the_run_started_does_not_stop_it(tmp_path):
    start(tmp_path)
    recorded = json.loads((tmp_path / ARGUMENTS_FILE).read_text())
    del recorded["vignette"]
    (tmp_path / ARGUMENTS_FILE).write_text(json.dumps(recorded))
    start(tmp_path, "--resume", "--vignette", "0.9")


def test_a_distilled_student_trains_no_more_epochs_than_there_are_stored_views():
    def targets(views):
        return {"views": views, "logits": torch.zeros(3, views, NUM_CLASSES)}

    default = parse_args(["--kd-alpha", "0.5"]).epochs
    assert student_epochs(default, targets(8)) == 8, "the views stored, whatever --views says (default 24)"
    assert student_epochs(default, targets(24)) == STUDENT_EPOCHS
    assert student_epochs(default, None) == STUDENT_EPOCHS, "fresh views every epoch on labels alone"
    assert student_epochs(parse_args(["--epochs", "10"]).epochs, targets(8)) == 10


def test_targets_only_needs_a_teacher_and_may_be_dropped_on_resume(tmp_path, capsys):
    with pytest.raises(SystemExit):
        parse_args(["--targets-only"])
    assert "--kd-alpha" in capsys.readouterr().err
    start(tmp_path, "--kd-alpha", "0.5", "--targets-only")
    start(tmp_path, "--kd-alpha", "0.5", "--resume")
