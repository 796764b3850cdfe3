/*
 * executor.pml -- Spin model of keel's ThreadPoolExecutor lifecycle protocol.
 *
 * Code modelled: kernel/src/executor/thread_pool.cpp -- enqueue(), place()
 * and claim_idle() (submit), worker_main(), wait_idle() and worker_exit()
 * (the worker loop, keep-alive retirement), with the decisions they carry
 * out (decisions.cpp: decide_admission, decide_worker_step), shutdown() with
 * and without cancel_futures.  Not
 * modelled: rejection policies other than abort, the block policy, priority
 * and handoff queues, shutdown_now, a broken pool (initializer failure),
 * resizing (set_core/max_threads, set_keep_alive), thread-factory failure,
 * user cancel of a queued future, and the reaping of exited workers.
 *
 * The pool mutex m_.  Every section that C++ runs under m_ is one atomic{}
 * block (the mutex itself is checked by futex_mutex.pml).  Nothing in those
 * sections blocks, and what other threads do outside m_ (a worker's CAS
 * IDLE->ASLEEP and its futex_wait, a task's run, a future's cancel) touches
 * state that a section reads or writes in single steps, so running each
 * section as one step hides no interleaving.  The handshakes that live
 * outside m_ -- a worker going to sleep on its signal word while a submitter
 * or shutdown claims it -- are modelled step by step.
 *
 * Pool state `pool` (RUNNING -> SHUTDOWN), `threads` (live_.size()), the
 * idle stack idle[0 .. nidle-1] (idle_, top = nidle-1), the bounded FIFO
 * queue `q` (capacity QCAP), CORE core threads, MAXT max threads.  A worker
 * slot w (0 .. MAXT-1) is one Promela process that waits at end_free while
 * the slot is FREE; spawning a worker sets the slot STARTING with its first
 * task.  `terminating` is terminating_ (termination decided, under m_),
 * `terminated` the terminated_ Event (shutdown(wait) and await_termination()
 * return, on_terminated runs).
 *
 * Per worker: sig[w] (its futex word: BUSY, IDLE, ASLEEP, CLAIMED),
 * handed[w] (a task handed to it directly, 0 = none), asleep[w] (enqueued on
 * the futex of sig[w]).  futex_wait(sig, ASLEEP) checks and enqueues in one
 * step, then returns when woken, or -- on a keep-alive wait -- when its
 * deadline passes (any time while still enqueued), or spuriously (a global
 * budget of SPURIOUS returns, so that a lost wake-up still shows up as a
 * sleeper blocked for ever).  A wake and a timeout racing each other resolve
 * as in Linux: whoever dequeues the sleeper first decides the result.  The
 * spin_then_yield_until phase before the CAS only re-reads the word, so it
 * is the one CAS step.
 *
 * Tasks 1 .. NTASK; submitter s (0 .. NSUB-1) submits tasks s+1, s+1+NSUB, ...
 * in order.  ts[t] is the task's future: NEW, PENDING (accepted, not final),
 * REJECTED (not accepted; submit reported it), FINISHED, CANCELLED.
 * One shutdown process calls shutdown(wait=true), choosing cancel_futures
 * non-deterministically, at any point relative to the submissions.
 *
 * submit(t), under m_:
 *   state != RUNNING                    -> rejected
 *   an idle worker                      -> pop it, handed = t, claim it
 *   threads < CORE                      -> spawn a worker with first task t
 *   queue not full                      -> enqueue t; if threads == 0 spawn a
 *                                          worker with no first task
 *   threads < MAXT                      -> spawn a worker with first task t
 *   otherwise                           -> rejected (saturated, abort policy)
 *   claim(w): prev = exchange(sig[w], CLAIMED); if prev == ASLEEP then
 *   futex_wake(sig[w]) -- still under m_.
 *
 * worker: run the first task if any; then, under m_, loop:
 *   queue non-empty                     -> pop, unlock, run it, relock
 *   state == SHUTDOWN                   -> exit
 *   may time out and the last idle wait timed out -> retire
 *   otherwise go idle: push self, sig = IDLE, unlock; CAS sig IDLE->ASLEEP;
 *   futex_wait(sig, ASLEEP) (with the keep-alive deadline iff the worker may
 *   time out: threads > CORE or ALLOW_CORE_TIMEOUT); relock; timed_out = the
 *   wait timed out or (timed and the deadline has passed -- a free choice
 *   here); if sig == CLAIMED take handed (run it outside m_ if it is a task)
 *   and clear timed_out, else remove self from the idle stack; loop.
 *   timed_out is also cleared after every task, as in worker_main.
 *   "may time out" is evaluated under m_ each time it is used.
 *   exit / retire: threads--, and if threads == 0, state == SHUTDOWN, the
 *   queue is empty and termination is not yet decided, the pool terminates.
 *
 * shutdown(cancel_futures), under m_: state = SHUTDOWN; if cancel_futures
 * cancel every queued task; claim every idle worker with handed = none; if
 * threads == 0 and the queue is empty the pool terminates.  Then (wait=true)
 * block until terminated.  (thread_pool.cpp drains the queue under m_ but
 * cancels the drained futures after unlocking: see BUG_CANCEL_AFTER_UNLOCK
 * and CANCEL_OUTSIDE_LOCK below.)
 *
 * Properties
 *   EXEC-1  every accepted task's future reaches exactly one final state:
 *           finishing or cancelling asserts the task is PENDING; when the
 *           pool reports termination no accepted task is still PENDING
 *           (finish_termination); at the end (pool terminated, all
 *           submitters returned) no task is PENDING or NEW (shutdown
 *           process's final assertions).  These two are in the safety
 *           build only, so that in the liveness build stranded work is
 *           reported by the LTL claim.
 *   EXEC-2  a task runs at most once and a cancelled task never runs
 *           (assertions when a worker runs a task).
 *   EXEC-3  a submission racing shutdown is either rejected or accepted and
 *           completed: once the pool has terminated, every task ever
 *           accepted is final (the assertions above, the last made after
 *           every submitter has returned).
 *   EXEC-5  no stranded work.  Safety: a worker goes idle only with an empty
 *           queue (assertion); a worker asleep for ever, or shutdown(wait)
 *           blocked for ever, is an invalid end state.  Liveness (compiled
 *           with -DLIVENESS, pan -a -f): the LTL claim exec5
 *               [] (ts[i] == PENDING -> <> ts[i] is final)   for every task i
 *           under weak fairness: every accepted task eventually finishes or
 *           is cancelled.
 *   EXEC-6  live threads never exceed MAXT (assertion at every spawn).
 *   EXEC-12 no task waits behind a running one while a worker idles: a
 *           submit enqueues only when no worker is idle (assertion), and a
 *           worker goes idle only with an empty queue (the EXEC-5
 *           assertion), so the two never coexist.
 *
 * Configuration (-D): CORE, MAXT, QCAP, NTASK (1..4), NSUB (submitters),
 * ALLOW_CORE_TIMEOUT (0/1), SPURIOUS (spurious-wake budget), and two
 * protocol variants:
 *   STALE_TIMED_OUT     timed_out is not cleared by a claim or a task (it
 *                       is only set at each idle wake): "retire if the
 *                       previous idle wait timed out", read literally.
 *   CANCEL_OUTSIDE_LOCK shutdown drains the queue under m_ and cancels the
 *                       drained futures after unlocking, as thread_pool.cpp
 *                       does, but with a guard: `cancelling` (set under m_
 *                       while drained futures are not yet cancelled) stops
 *                       worker_exit from terminating the pool; shutdown
 *                       relocks when done and terminates it if that is due.
 *
 * Facts the model shows about the protocol, which decide where the twins
 * below can be caught:
 *   - While any worker is on the idle stack the queue is empty (submit hands
 *     off to an idle worker rather than enqueue), so a worker that wakes
 *     unclaimed always finds the queue empty.  With timed_out cleared on a
 *     claim and after each task (thread_pool.cpp), a worker reaches the
 *     retire check with timed_out set only straight after an unclaimed
 *     wake, when the queue is empty: the queue check before retiring is then
 *     redundant, and BUG_RETIRE_IGNORES_QUEUE is an equivalent mutant (it
 *     passes every configuration).  It is caught only with
 *     STALE_TIMED_OUT: a worker whose wait timed out, then claimed and run
 *     the handed task, comes back with timed_out still set while a submit
 *     has queued a task.
 *   - With CORE >= 1, threads == 0 implies threads < CORE, so submit takes the
 *     core branch; the "enqueue, then spawn if threads == 0" step is reachable
 *     only with CORE == 0.
 *
 * Seeded-bug twins (spin -D<NAME> -a executor.pml):
 *   BUG_CLAIM_SKIPS_WAKE      submit's claim sets CLAIMED but never wakes an
 *                             ASLEEP worker (executor_claim_skips_wake).  Only
 *                             a hang for a worker that sleeps without a
 *                             keep-alive deadline (a core worker, CORE >= 1,
 *                             no ALLOW_CORE_TIMEOUT); a worker with a
 *                             deadline finds the claim when its wait times
 *                             out.
 *   BUG_TIMEOUT_IGNORES_CLAIM a worker whose wait timed out ignores a claim
 *                             that raced the timeout (executor_timeout_
 *                             ignores_claim): the handed task is dropped.
 *   BUG_SUBMIT_AFTER_SHUTDOWN submit ignores the SHUTDOWN state and accepts
 *                             the task by the normal path (executor_submit_
 *                             ignores_shutdown).  This strands no work (live
 *                             workers drain the queue before they exit, and
 *                             with threads == 0 submit spawns one): the
 *                             damage is a task accepted, and a worker
 *                             started, after the pool terminated, which only
 *                             the EXEC-1/EXEC-3 assertions catch.
 *   BUG_NO_WORKER_FOR_QUEUE   enqueueing when threads == 0 does not spawn a
 *                             worker (executor_queue_without_worker).  Needs
 *                             CORE == 0.
 *   BUG_RETIRE_IGNORES_QUEUE  the retire check comes before the queue check.
 *                             Caught only with STALE_TIMED_OUT (see above).
 *   BUG_QUEUE_WHILE_IDLE      submit queues the task while a worker is idle
 *                             and another busy (executor_queue_while_idle):
 *                             it waits behind the busy one's task.  Caught
 *                             by the EXEC-12 assertion; it strands nothing
 *                             (the busy worker takes it next), so no hang
 *                             shows it.
 *   BUG_CANCEL_AFTER_UNLOCK   shutdown cancels the drained futures after
 *                             unlocking, with no guard: CANCEL_OUTSIDE_LOCK
 *                             without `cancelling`.  This is what
 *                             thread_pool.cpp's shutdown() does: the last
 *                             worker can exit and terminate the pool while a
 *                             drained future is still PENDING.
 */

#ifndef CORE
#define CORE 1
#endif
#ifndef MAXT
#define MAXT 2
#endif
#ifndef QCAP
#define QCAP 1
#endif
#ifndef NTASK
#define NTASK 3
#endif
#ifndef NSUB
#define NSUB 2
#endif
#ifndef ALLOW_CORE_TIMEOUT
#define ALLOW_CORE_TIMEOUT 0
#endif
#ifndef SPURIOUS
#define SPURIOUS 1
#endif

#if MAXT < 1 || MAXT > 3 || CORE > MAXT || NTASK < 1 || NTASK > 4 || NSUB < 1 || NSUB > NTASK
#error "unsupported configuration"
#endif

/* pool state */
#define RUNNING  0
#define SHUTDOWN 1

/* a task's future */
#define NEW       0
#define PENDING   1
#define REJECTED  2
#define FINISHED  3
#define CANCELLED 4
#define final(s)  ((s) == FINISHED || (s) == CANCELLED)

/* a worker's signal word */
#define BUSY    0
#define IDLE    1
#define ASLEEP  2
#define CLAIMED 3

/* worker slots */
#define FREE     0
#define STARTING 1
#define LIVE     2

/* futex_wait results */
#define WOKEN    0
#define TIMEDOUT 1

byte pool = RUNNING;
byte threads = 0;
byte nidle = 0;
byte idle[MAXT];
chan q = [QCAP] of { byte };
bool terminating = false;     /* terminating_: termination decided */
bool cancelling = false;      /* CANCEL_OUTSIDE_LOCK: shutdown is cancelling drained tasks */
bool terminated = false;      /* terminated_ (the Event) is set */

byte ts[NTASK + 1];          /* ts[0] unused */
byte npending = 0;           /* tasks accepted and not yet final */
byte nsub_done = 0;

byte wslot[MAXT];
byte first[MAXT];
byte handed[MAXT];
byte sig[MAXT];
bool asleep[MAXT];           /* the futex wait queue of sig[w] */
byte spurious_left = SPURIOUS;

inline accept(t)
{
    assert(ts[t] == NEW);
    ts[t] = PENDING;
    npending++
}

/* a task reaches its final state s: exactly once (EXEC-1) */
inline make_final(t, s)
{
    assert(ts[t] == PENDING);
    ts[t] = s;
    npending--
}

/* a task enters the queue only while no worker is idle (EXEC-12); with
 * the check where a worker goes idle (only with an empty queue), an idle
 * worker and a queued task never coexist */
inline enqueue(t)
{
    assert(nidle == 0);
    q!t
}

/* claim(w): prev = exchange(sig[w], CLAIMED); wake it if it was asleep */
inline claim(w, prev, wake)
{
    prev = sig[w];
    sig[w] = CLAIMED;
    if
    :: prev == ASLEEP && wake -> asleep[w] = false     /* futex_wake(sig[w], 1) */
    :: else -> skip
    fi;
    prev = 0
}

/* spawn a worker (in a free slot) whose first task is t0 (0 = none) */
inline spawn(t0, w)
{
    assert(threads < MAXT);                            /* EXEC-6 */
    w = 0;
    do
    :: w < MAXT && wslot[w] != FREE -> w++
    :: else -> break
    od;
    assert(w < MAXT);
    wslot[w] = STARTING;
    first[w] = t0;
    threads++;
    w = 0
}

/* the pool reports termination (Event terminated_ set: shutdown(wait) and
 * await_termination() return, on_terminated runs); every task accepted so
 * far must be final by then (EXEC-1, EXEC-3) */
inline finish_termination()
{
#ifndef LIVENESS
    assert(npending == 0);
#endif
    terminated = true
}

/* a worker's exit or keep-alive retirement, under the mutex (the C++ worker
 * calls finish_termination just after unlocking; nothing else is due from
 * it, so doing it in the same step hides nothing) */
inline worker_exit()
{
    threads--;
    if
    :: threads == 0 && pool == SHUTDOWN && empty(q) && !terminating && !cancelling ->
        terminating = true;
        finish_termination()
    :: else -> skip
    fi;
    wslot[me] = FREE;
    t = 0; r = 0; i = 0; timed = false; timed_out = false; act = 0
}

/* running a task: EXEC-2 */
inline run_task(t)
{
    atomic {
        assert(ts[t] != CANCELLED);                    /* a cancelled task never runs */
        assert(ts[t] != FINISHED);                     /* a task runs at most once */
        make_final(t, FINISHED);
        t = 0
    }
}

#define ACT_RUN  1
#define ACT_IDLE 2
#define ACT_EXIT 3

#define may_time_out (threads > CORE || ALLOW_CORE_TIMEOUT)

#if defined(BUG_CANCEL_AFTER_UNLOCK) || defined(CANCEL_OUTSIDE_LOCK)
#define DRAIN_THEN_CANCEL
#endif
#if defined(BUG_CANCEL_AFTER_UNLOCK) && defined(CANCEL_OUTSIDE_LOCK)
#error "BUG_CANCEL_AFTER_UNLOCK is CANCEL_OUTSIDE_LOCK without its guard: pick one"
#endif

active [MAXT] proctype worker()
{
    byte me = _pid;
    byte t;          /* the task in hand */
    byte r;          /* futex_wait result */
    byte i;
    byte act;
    bool waited;     /* back from an idle wait */
    bool timed;      /* this idle wait has the keep-alive deadline */
    bool timed_out;  /* the previous idle wait timed out */

end_free:
    atomic {
        wslot[me] == STARTING ->
        assert(me < MAXT);
        wslot[me] = LIVE;
        t = first[me];
        first[me] = 0
    };
    if
    :: t != 0 -> run_task(t)
    :: else -> skip
    fi;

locked:
    atomic {
        /* back from an idle wait: claimed or not? */
        if
        :: waited ->
            waited = false;
            /* timed_out = r == timed_out || (timed && deadline.expired()):
             * a keep-alive deadline may have passed whatever woke us */
            timed_out = (r == TIMEDOUT);
            if
            :: timed && !timed_out ->
                if
                :: timed_out = true
                :: skip
                fi
            :: else -> skip
            fi;
            timed = false;
            r = 0;
            if
#ifdef BUG_TIMEOUT_IGNORES_CLAIM
            :: sig[me] == CLAIMED && !timed_out ->
#else
            :: sig[me] == CLAIMED ->
#endif
                /* the claimer took us off the idle stack: a claim that
                 * raced the timeout wins */
                t = handed[me];
                handed[me] = 0;
#ifndef STALE_TIMED_OUT
                timed_out = false
#else
                skip
#endif
            :: else ->
                /* not claimed (or, with the twin, a claim ignored): remove
                 * self from the idle stack if still there */
                i = 0;
                do
                :: i < nidle && idle[i] != me -> i++
                :: else -> break
                od;
                if
                :: i < nidle ->
                    do
                    :: i + 1 < nidle -> idle[i] = idle[i + 1]; i++
                    :: else -> break
                    od;
                    nidle--;
                    idle[nidle] = 0
                :: else -> skip
                fi;
                i = 0
            fi;
            sig[me] = BUSY
        :: else -> skip
        fi;
        if
        :: t != 0 -> act = ACT_RUN          /* a handed task: run it unlocked */
        :: else ->
#ifdef BUG_RETIRE_IGNORES_QUEUE
            if
            :: pool == RUNNING && timed_out && may_time_out -> act = ACT_EXIT
            :: else -> skip
            fi;
            if
            :: act == ACT_EXIT -> skip
            :: else ->
#endif
            if
            :: nempty(q) ->
                q?t;
                act = ACT_RUN
            :: empty(q) && pool == SHUTDOWN ->
                act = ACT_EXIT
            :: empty(q) && pool == RUNNING && timed_out && may_time_out ->
                act = ACT_EXIT                  /* keep-alive retirement */
            :: else ->
                /* go idle */
                assert(empty(q));               /* EXEC-5: idle only with no queued work */
                idle[nidle] = me;
                nidle++;
                sig[me] = IDLE;
                handed[me] = 0;
                timed = may_time_out;
                act = ACT_IDLE
            fi
#ifdef BUG_RETIRE_IGNORES_QUEUE
            fi
#endif
        fi;
        if
        :: act == ACT_EXIT ->
            worker_exit();
            goto end_free
        :: else -> skip
        fi
    };
    if
    :: act == ACT_RUN ->
        act = 0;
        run_task(t);
#ifndef STALE_TIMED_OUT
        timed_out = false
#else
        skip
#endif
    :: act == ACT_IDLE ->
        act = 0;
        /* spin, then sleep: CAS sig IDLE -> ASLEEP */
        atomic {
            if
            :: sig[me] == IDLE -> sig[me] = ASLEEP
            :: else -> skip
            fi
        };
        /* futex_wait(sig[me], ASLEEP, timed ? keep-alive deadline : none) */
        atomic {
            if
            :: sig[me] == ASLEEP -> asleep[me] = true
            :: else -> skip
            fi
        };
        if
        :: !asleep[me] -> skip                      /* woken, or value mismatch */
        :: atomic { timed && asleep[me] -> asleep[me] = false; r = TIMEDOUT }
        :: atomic { spurious_left > 0 && asleep[me] -> asleep[me] = false; spurious_left-- }
        fi;
        waited = true
    fi;
    goto locked
}

active [NSUB] proctype submitter()
{
    byte t = _pid - MAXT + 1;
    byte w, prev;

    assert(t >= 1 && t <= NSUB);
    do
    :: t <= NTASK ->
        atomic {    /* submit(t), under the mutex */
#ifndef BUG_SUBMIT_AFTER_SHUTDOWN
            if
            :: pool != RUNNING -> ts[t] = REJECTED
            :: else ->
#endif
                if
#ifdef BUG_QUEUE_WHILE_IDLE
                :: nidle > 0 && threads > nidle && len(q) < QCAP ->
                    accept(t);
                    enqueue(t)
                :: nidle > 0 && !(threads > nidle && len(q) < QCAP) ->
#else
                :: nidle > 0 ->
#endif
                    accept(t);
                    nidle--;
                    w = idle[nidle];
                    idle[nidle] = 0;
                    handed[w] = t;
#ifdef BUG_CLAIM_SKIPS_WAKE
                    claim(w, prev, false)
#else
                    claim(w, prev, true)
#endif
                :: else ->
                    if
                    :: threads < CORE ->
                        accept(t);
                        spawn(t, w)
                    :: threads >= CORE && len(q) < QCAP ->
                        accept(t);
                        enqueue(t);
                        if
                        :: threads == 0 ->
#ifndef BUG_NO_WORKER_FOR_QUEUE
                            spawn(0, w)
#else
                            skip
#endif
                        :: else -> skip
                        fi
                    :: threads >= CORE && len(q) >= QCAP && threads < MAXT ->
                        accept(t);
                        spawn(t, w)
                    :: else ->
                        ts[t] = REJECTED            /* saturated */
                    fi
                fi;
                w = 0
#ifndef BUG_SUBMIT_AFTER_SHUTDOWN
            fi
#endif
        };
        t = t + NSUB
    :: else -> break
    od;
    atomic { t = 0; nsub_done++ }
}

active proctype shutdowner()
{
    bool cancel_futures;
    bool term;
    byte t, w, prev;
    byte drained;    /* bit t: task t drained from the queue, to be cancelled */

    if
    :: cancel_futures = true
    :: cancel_futures = false
    fi;
    atomic {    /* shutdown(cancel_futures), under the mutex */
        pool = SHUTDOWN;
        if
        :: cancel_futures ->
            do
            :: nempty(q) ->
                q?t;
#ifdef DRAIN_THEN_CANCEL
                drained = drained | (1 << t)
#else
                make_final(t, CANCELLED)
#endif
            :: empty(q) -> break
            od;
            t = 0
        :: else -> skip
        fi;
        do
        :: nidle > 0 ->
            nidle--;
            w = idle[nidle];
            idle[nidle] = 0;
            handed[w] = 0;
            claim(w, prev, true)
        :: else -> break
        od;
        w = 0;
#ifdef CANCEL_OUTSIDE_LOCK
        cancelling = (drained != 0);
#endif
        if
        :: threads == 0 && empty(q) && !terminating && !cancelling ->
            terminating = true;
#ifdef DRAIN_THEN_CANCEL
            term = true
#else
            /* C++ sets the Event after unlocking; with the queue cancelled
             * under the mutex nothing is left to do in between, so it is
             * done in this step */
            finish_termination()
#endif
        :: else -> skip
        fi
    };
#ifdef DRAIN_THEN_CANCEL
    /* the drained tasks are cancelled after the mutex is released */
    t = 1;
    do
    :: t <= NTASK && (drained & (1 << t)) ->
        atomic {    /* t->cancel() */
            make_final(t, CANCELLED);
            drained = drained & ~(1 << t);
            t++
        }
    :: t <= NTASK && !(drained & (1 << t)) -> t++
    :: t > NTASK -> break
    od;
    t = 0;
#ifdef CANCEL_OUTSIDE_LOCK
    atomic {    /* relock: done cancelling; finish termination if due */
        if
        :: cancelling ->
            cancelling = false;
            if
            :: threads == 0 && empty(q) && !terminating ->
                terminating = true;
                term = true
            :: else -> skip
            fi
        :: else -> skip
        fi
    };
#endif
    if
    :: term -> atomic { finish_termination(); term = false }
    :: else -> skip
    fi;
#endif
    terminated;                 /* wait=true: join every worker */
#ifndef LIVENESS
    /* (left out of the liveness build, so that stranded work is reported by
     * the LTL claim rather than by these assertions) */
    nsub_done == NSUB;
    /* EXEC-1, EXEC-3: after termination, and once every submit has returned,
     * every task was rejected or is final */
    t = 1;
    do
    :: t <= NTASK ->
        assert(ts[t] != NEW);
        assert(ts[t] != PENDING);
        t++
    :: else -> break
    od;
    assert(npending == 0 && empty(q) && threads == 0)
#endif
}

#ifdef LIVENESS
#define resp(i) (ts[i] == PENDING -> <> final(ts[i]))
#if NTASK == 1
ltl exec5 { [] resp(1) }
#elif NTASK == 2
ltl exec5 { [] (resp(1) && resp(2)) }
#elif NTASK == 3
ltl exec5 { [] (resp(1) && resp(2) && resp(3)) }
#else
ltl exec5 { [] (resp(1) && resp(2) && resp(3) && resp(4)) }
#endif
#endif
