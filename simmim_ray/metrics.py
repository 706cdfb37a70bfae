"""Metric names: the keys a run reports, the search reads and the results tables carry. One place, so a rename
cannot leave a reader looking for a key nobody writes. Pure Python."""
from __future__ import annotations

# Accuracy of the fine-tuned (or probed) encoder on the validation split: what the search optimises and what
# feasibility during the search is decided on. Present only in a run's final report.
VAL_ACCURACY = "val_accuracy"
VAL_COUNT = "val_count"  # images behind VAL_ACCURACY (for its interval)
# a borderline final accuracy measured again (train/loop_config.Remeasure): every fine-tune seed's value, whose
# mean is VAL_ACCURACY
VAL_ACCURACY_SEEDS = "val_accuracy_seeds"
# Accuracy on the test split: only confirmation runs and `simmim-ray train` measure it, never a search trial, and
# nothing chooses on it.
TEST_ACCURACY = "test_accuracy"
TEST_COUNT = "test_count"
PROXY_KNN = "proxy_knn"  # per-epoch k-NN accuracy on the validation split (early stopping)
PARAMS = "params"  # encoder parameters
FLOPS = "flops"  # encoder forward FLOPs per image
EPOCH = "epoch"  # pre-training epochs completed
DONE = "done"  # the run's final report
REPLAYED = "replayed"  # a final report sent again (a finished run or trial started again), not a new measurement
LOSS = "loss"
LOSS_MASKED = "loss_masked"
LOSS_VISIBLE = "loss_visible"
IMAGES_PER_S = "images_per_s"
TRAIN_SECONDS = "train_seconds"
SKIPPED_IMAGES = "skipped_images"

# The answer (search/answer/report.py: the `report --json` contract). A row's 95% Wilson interval of VAL_ACCURACY
# on VAL_COUNT images; an accuracy over a confirmation's fresh seeds: mean, sample std, 95% t-interval, every seed's
# value. CONFIRM_VAL_*: validation, what the winner is chosen on; TEST_*: test, measured alongside and only reported.
VAL_ACCURACY_LOW = "val_accuracy_low"
VAL_ACCURACY_HIGH = "val_accuracy_high"
VAL_ACCURACY_CI95 = "val_accuracy_ci95"
TEST_ACCURACY_MEAN = "test_accuracy_mean"
TEST_ACCURACY_STD = "test_accuracy_std"
TEST_ACCURACY_CI95 = "test_accuracy_ci95"
TEST_ACCURACY_PER_SEED = "test_accuracy_per_seed"
CONFIRM_VAL_ACCURACY_MEAN = "confirm_val_accuracy_mean"
CONFIRM_VAL_ACCURACY_STD = "confirm_val_accuracy_std"
CONFIRM_VAL_ACCURACY_CI95 = "confirm_val_accuracy_ci95"
CONFIRM_VAL_ACCURACY_PER_SEED = "confirm_val_accuracy_per_seed"
TEST_SEED_FIELDS = (TEST_ACCURACY_MEAN, TEST_ACCURACY_STD, TEST_ACCURACY_CI95, TEST_ACCURACY_PER_SEED)
CONFIRM_VAL_SEED_FIELDS = (CONFIRM_VAL_ACCURACY_MEAN, CONFIRM_VAL_ACCURACY_STD, CONFIRM_VAL_ACCURACY_CI95,
                           CONFIRM_VAL_ACCURACY_PER_SEED)
FEASIBLE = "feasible"

SIZE_METRICS = (PARAMS, FLOPS)
# What a results row keeps of a trial's final report.
ROW_METRICS = (VAL_ACCURACY, VAL_COUNT, PARAMS, FLOPS, PROXY_KNN, LOSS, LOSS_MASKED, IMAGES_PER_S, TRAIN_SECONDS,
               SKIPPED_IMAGES)
