#!/usr/bin/env bash
# Runs every protocol mutant of offload (the `mutant!("name")` switches in
# src/) against the loom model that must catch it, and reports caught/missed.
#
#   loom-tests/mutants.sh                 # every mutant
#   loom-tests/mutants.sh latch_relaxed   # only the ones named
#
# For each mutant it first checks that the model passes on the unmutated
# build (target/loom, as the README's test command), then builds with
# RUSTFLAGS='--cfg loom --cfg offload_mutant="NAME"' into target/loom-mutant
# and runs the model: a failing model (panic, loom causality violation,
# deadlock or leak) means the mutant is caught. A build failure is an error,
# never a catch. Exits non-zero if any mutant is missed or anything errs.
set -uo pipefail
cd "$(dirname "$0")/.."

export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"
export CARGO_TERM_COLOR=never

# mutant  test-binary  model
MUTANTS="
complete_relaxed        handoff  wait_races_completion
release_no_acquire      handoff  task_drop_after_poll_races_job
cancel_ignores_running  handoff  task_drop_races_job
waker_no_handshake      handoff  completion_races_poll_with_new_waker
poll_spin_relaxed       handoff  await_races_completion
notify_no_fence         sleep    submit_races_sleep_one_worker
sleep_no_recheck        sleep    submit_races_sleep_one_worker
stop_spinning_no_recheck sleep   spinner_that_finds_work_wakes_a_sleeper
batch_taken_outside_spin sleep   batch_landing_wakes_a_sleeper
parker_relaxed          parker   unpark_races_park
parker_overwrites_token parker   unpark_races_park
parker_owner_unpublished parker  unpark_races_park
parker_wakes_before_reading_owner parker rebind_after_a_wake
latch_relaxed           latch    join_latch_value
count_latch_relaxed     latch    scope_count_latch
exit_no_drain           pool     pool_spawn_races_exit
injector_link_relaxed   injector injector_pushes_race_a_worker
injector_unlock_relaxed injector injector_consumers_take_turns
injector_stub_swapped   injector injector_empty_check_sees_every_push
push_again_keeps_link   injector injector_push_again_races_a_push
stop_ignores_task       stop     stop_if_cancelled_races_cancel_and_completion
slots_release_skips_line flow    slot_release_wakes_a_reserve_waiter
slots_waiting_stored    flow     slot_release_wakes_a_reserve_waiter
slot_leaked             flow     try_acquire_races_start_and_cancel
cancel_takes_running    flow     cancel_races_job_start
job_scope_not_entered   flow     cancel_races_job_start
parker_timeout_stores   flow     timed_park_races_unpark
stepped_out_keeps_grant flow     a_waiter_steps_out_while_its_worker_runs_a_job
baton_wanted_not_raised blocking baton_lend_and_come_back
watch_swap_before_waker observe  loop_watch_tick_races_first_poll
capture_give_up_stores  observe  capture_slot_timeout_races_the_handler
capture_ignores_target  stall_capture  capture_slot_beside_the_proc_path
spin_round_leaks_token  sleep    a_spinning_waiter_passes_wakeup_on
unflag_load_then_store  detect   detected_runner_and_helper_counts_return_to_zero
dormancy_no_fence       detect   dormant_detector_is_woken_by_a_push_that_wakes_nobody
deferred_no_fence       detect   held_back_wake_up_reaches_the_dormant_detector
marked_end_no_fence     detect   a_marked_call_that_ends_while_flagged_leaves_no_flag
join_publish_no_wake    join     join_half_is_taken_by_an_idle_worker
spares_turns_count_as_jobs spares a_stand_in_leaves_a_spare_for_spawn_blocking
lane_counted_after_wake priority high_job_pushed_while_the_worker_falls_asleep_wakes_it
worker_job_end_skips_hold blocking pool_blocking_comes_back_early
"

selected=("$@")
wanted() {
    [ ${#selected[@]} -eq 0 ] && return 0
    local m
    for m in "${selected[@]}"; do [ "$m" = "$1" ] && return 0; done
    return 1
}

run_model() { # target-dir rustflags binary model logfile
    RUSTFLAGS="$2" cargo test --release -q -p loom-tests --target-dir "$1" \
        --test "$3" -- --exact "$4" --test-threads=1 >"$5" 2>&1
}

log_dir=$(mktemp -d)
status=0
results=()
found=0
while read -r mutant binary model; do
    [ -z "$mutant" ] && continue
    wanted "$mutant" || continue
    found=1
    printf '%-24s %-8s %-40s ' "$mutant" "$binary" "$model"

    clean_log="$log_dir/$mutant.clean.log"
    if ! run_model target/loom "--cfg loom" "$binary" "$model" "$clean_log"; then
        echo "ERROR (the model fails without the mutant; see $clean_log)"
        results+=("$mutant: error"); status=1; continue
    fi

    flags="--cfg loom --cfg offload_mutant=\"$mutant\""
    build_log="$log_dir/$mutant.build.log"
    if ! RUSTFLAGS="$flags" cargo test --release -q -p loom-tests --target-dir target/loom-mutant \
        --test "$binary" --no-run >"$build_log" 2>&1; then
        echo "ERROR (build failed; see $build_log)"
        results+=("$mutant: error"); status=1; continue
    fi

    log="$log_dir/$mutant.log"
    start=$(date +%s)
    if run_model target/loom-mutant "$flags" "$binary" "$model" "$log"; then
        echo "MISSED ($(( $(date +%s) - start )) s; see $log)"
        results+=("$mutant: missed"); status=1
    else
        why=""
        for pattern in 'Causality violation[^.]*' '^deadlock' '[A-Za-z]+ leaked' \
            'a panic in user code was caught by the library' 'assertion[^:]*failed.*'; do
            why=$(grep -m1 -oE "$pattern" "$log") && break
        done
        echo "caught ($(( $(date +%s) - start )) s: ${why:-model failed})"
        results+=("$mutant: caught")
    fi
done <<<"$MUTANTS"

if [ "$found" -eq 0 ]; then
    echo "no such mutant: ${selected[*]}" >&2
    exit 2
fi
echo
echo "logs in $log_dir"
if [ "$status" -eq 0 ]; then
    echo "every mutant caught"
else
    printf '%s\n' "${results[@]}" | grep -v ': caught$' | sed 's/^/NOT CAUGHT: /'
fi
exit "$status"
