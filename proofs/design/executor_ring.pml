/*
 * executor_ring.pml -- a DESIGN model, written before its code: the
 * hand-off protocol of the ThreadPoolExecutor's ring mode, which now ships
 * with the MONITOR policy (kernel/src/executor/thread_pool.cpp; its Relacy
 * models are the executor.ring.* suites and hot_path_model.cpp, paired
 * with this model's twins in proofs/design/README.md).  On its lock, the
 * pool (proofs/executor.pml) claims one idle worker per task; this
 * protocol takes the lock off the hot path:
 *
 *   - submitters pass a gate word (closed bit + in-flight count) instead of
 *     the lock, push the task into a FIFO ring, leave the gate, and then
 *     decide whether to wake a sleeping worker (the wake policy below);
 *   - workers pop the ring without the lock; a worker that finds it empty
 *     may spin as the one spinner, then sleeps on an event count (an epoch
 *     word read before it registers as a sleeper, a re-check of the ring
 *     after registering, futex_wait(epoch, e));
 *   - shutdown closes the gate, waits until no submitter is inside it,
 *     drains the ring when cancel_futures, marks the pool drained, and wakes
 *     every sleeper; a worker retires only when the pool is drained and the
 *     ring is empty.
 *
 * The wake policy is what the prototype measurements turned on (bench/
 * README.md, 2026-12-06): after its push, a submitter that sees a sleeper
 * waits a bounded time (a spin) for its own task to be taken, and wakes one
 * sleeper if it was not.  Trusting a spinning worker instead (no wake while
 * one spins: BUG_TRUST_SPINNER) is cheaper and breaks keel's promise that n
 * tasks on n workers run in parallel: the spinner can take an older task
 * and run it for as long as that task likes while the newer one waits
 * behind it and a worker sleeps.
 *
 * MONITOR selects the other sound policy, the one the prototype found
 * fastest: a submitter that sees every worker asleep wakes one and does
 * nothing more; one that sees a sleeper beside an awake worker wakes no
 * worker but makes sure a monitor thread is awake, and the monitor wakes a
 * sleeper when the ring has a backlog whose head did not move for a tick
 * (the awake workers are stuck in their tasks), as Go's sysmon retakes a
 * stuck processor.  A task behind a long one then starts within a tick or
 * two, not at once.
 *
 * The promise is checked with a rendezvous (RDV): task 1 runs until task 2
 * has started, as CPython's and the TCK's tests do with a barrier of two.
 * If task 2 can wait in the ring while the other worker sleeps, task 1
 * never ends, the submitter's result() never returns, and Spin reports an
 * invalid end state.  Every submitter waits for its futures (result()) after
 * submitting; an idle worker asleep at the end is a valid end state.
 *
 * Sequentially consistent, as Promela is: the C++ protocol needs seq_cst on
 * the sleeper count and the ring's publication against it (the Dekker pair:
 * a submitter's push then its read of `sleepers`, a worker's sleepers++
 * then its re-check).  That, the ring's own cells and the gate's counter
 * are for a Relacy model of the code, when there is code.
 *
 * Not modelled: the lock path (a closed gate here means shut down), pool
 * resizing and keep-alive retirement, priority, bounded and handoff queues,
 * shutdown_now, a broken pool, the statistics snapshot (EXEC-8), ring
 * overflow, spurious wake-ups.
 *
 * Properties: EXEC-1 (every accepted task ends exactly once: finishing
 * asserts RUNNING, starting asserts PENDING), EXEC-2 (a cancelled task never
 * runs), EXEC-3 (a submission racing shutdown is rejected or completed: no
 * task is PENDING or RUNNING once the pool has terminated), EXEC-5 and the
 * parallelism promise (invalid end states: a result() or shutdown(wait)
 * blocked for ever).
 *
 * Configuration (-D): W workers (1..3), NTASK tasks (2..4), NSUB submitters
 * (1..2; submitter s submits s+1, s+1+NSUB, ...), RDV (0/1), SHUT (0/1: a
 * shutdown(wait) racing the submissions, with cancel_futures chosen freely,
 * or no shutdown at all), STATS (0/1: a racing stats()), MONITOR (0/1).
 *
 * Seeded-bug twins (each must be caught):
 *   BUG_TRUST_SPINNER     a submitter skips the wake while a worker spins.
 *                         The same policy with GO_RULE (-DTRUST_SPINNER
 *                         -DGO_RULE: a worker that takes a task while more
 *                         wait wakes a sleeper, unless one spins, as Go's
 *                         scheduler does) is sound again: a model row.
 *   BUG_MONITOR_NO_RECHECK the monitor sleeps without looking at the ring
 *                         after saying so: a push that saw it awake is
 *                         never watched.
 *   BUG_MONITOR_LEFT_ASLEEP a submitter that wakes no worker (one is awake,
 *                         or so it read) leaves the monitor asleep too.
 *   BUG_MONITOR_TRUST_SPINNER a submitter leaves the monitor asleep while a
 *                         worker spins: the trap of BUG_TRUST_SPINNER again.
 *   BUG_NO_RECHECK        a worker sleeps without re-checking the ring after
 *                         it registered as a sleeper: a push that saw no
 *                         sleeper is never taken.
 *   BUG_EPOCH_LATE        a worker reads the epoch after its re-check, so a
 *                         wake between the two is lost.
 *   BUG_NO_INFLIGHT_WAIT  shutdown marks the pool drained without waiting
 *                         for the submitters inside the gate: a push lands
 *                         after the last worker retired.
 *   BUG_RETIRE_ON_SHUTDOWN a worker retires once the pool is shut down
 *                         rather than drained (the same push, stranded).
 */

#ifndef W
#define W 2
#endif
#ifndef NTASK
#define NTASK 2
#endif
#ifndef NSUB
#define NSUB 1
#endif
#ifndef RDV
#define RDV 1
#endif
#ifndef SHUT
#define SHUT 0
#endif
#ifndef STATS
#define STATS 0
#endif
#ifndef MONITOR
#define MONITOR 0
#endif

#if W < 1 || W > 3 || NTASK < 2 || NTASK > 4 || NSUB < 1 || NSUB > 2
#error "unsupported configuration"
#endif

/* pool phase */
#define RUNNING  0
#define SHUTDOWN 1   /* gate closed; submitters may still be inside it */
#define DRAINED  2   /* gate closed and empty: nothing more is pushed */

/* a task's future */
#define NEW       0
#define PENDING   1  /* in the ring */
#define RUNNING_T 2
#define FINISHED  3
#define CANCELLED 4
#define REJECTED  5
#define settled(s) ((s) == FINISHED || (s) == CANCELLED || (s) == REJECTED)
#define started(s) ((s) != NEW && (s) != PENDING)

byte phase = RUNNING;
bool gate_closed = false;
byte inflight = 0;          /* submitters inside the gate */

byte ring[NTASK];
byte head = 0;              /* tasks taken */
byte tail = 0;              /* tasks pushed */

byte epoch = 0;             /* the event count's futex word */
byte sleepers = 0;          /* workers registered to sleep */
bool spinner = false;       /* one worker at most spins on the ring */
bool infutex[W];            /* in futex_wait(epoch) */

#if STATS
/* a worker's state, as stats() reads it */
#define W_IDLE     0
#define W_TAKING   1   /* about to pop: looked at `freeze` after saying so */
#define W_ACTIVE   2   /* running a task */
#define W_FINISHING 3  /* its task ended; about to count it completed */
#define W_PARKED   4   /* parked by a snapshot before a pop */
#define W_PARKED_ACTIVE 5  /* parked by a snapshot before counting its task */
byte wst[W];
byte completed[W];
byte submitted = 0;
bool freeze = false;        /* stats() is taking a snapshot */
bool lock = false;          /* the pool lock m_: stats() and shutdown() take it */
#endif

#if MONITOR
bool mon_awake = false;     /* the monitor thread's futex word */
#endif

byte live = W;
bool terminated = false;

byte ts[NTASK + 1];         /* ts[0] unused */

inline wake_one()
{
    atomic {
        epoch++;
        if
        :: infutex[0] -> infutex[0] = false
#if W > 1
        :: infutex[1] -> infutex[1] = false
#endif
#if W > 2
        :: infutex[2] -> infutex[2] = false
#endif
        :: else -> skip
        fi
    }
}

inline wake_all()
{
    atomic {
        epoch++;
        i = 0;
        do
        :: i < W -> infutex[i] = false; i++
        :: else -> i = 0; break
        od
    }
}

proctype worker(byte me)
{
    byte t = 0;
    byte e = 0;
    byte i = 0;
loop:
#if STATS
    /* say TAKING, then look at `freeze`: a snapshot either sees this worker
     * TAKING and waits, or this worker sees the snapshot and parks */
    do
    :: wst[me] = W_TAKING;
        if
#ifndef BUG_STATS_NO_PARK
        :: freeze -> wst[me] = W_PARKED; !freeze
#endif
        :: else -> break
        fi
    od;
#endif
    atomic {
        if
        :: head < tail -> t = ring[head % NTASK]; head++
        :: else -> skip
        fi;
#if STATS
        if
        :: t != 0 -> wst[me] = W_ACTIVE
        :: else -> wst[me] = W_IDLE
        fi
#endif
    }
    if
    :: t != 0 -> goto take
    :: else -> skip
    fi;
    /* the ring is empty: retire, under the lock, once the pool is drained */
    atomic {
        if
#ifdef BUG_RETIRE_ON_SHUTDOWN
        :: phase != RUNNING && head == tail ->
#else
        :: phase == DRAINED && head == tail ->
#endif
            live--;
            if
            :: live == 0 ->
                i = 1;
                do
                :: i <= NTASK -> assert(ts[i] != PENDING && ts[i] != RUNNING_T); i++
                :: else -> i = 0; break
                od;
                terminated = true
            :: else -> skip
            fi;
            goto retired
        :: else -> skip
        fi
    }
    /* one spinner: polls the ring until it takes a task or gives up */
    atomic {
        if
        :: !spinner -> spinner = true; e = 1
        :: else -> e = 0
        fi
    }
    if
    :: e == 1 ->
        e = 0;
        do
#if STATS
        :: atomic { head < tail -> spinner = false }; goto loop   /* pops as above */
#else
        :: atomic { head < tail -> t = ring[head % NTASK]; head++; spinner = false }; goto take
#endif
        :: atomic { spinner = false }; break
        od
    :: else -> skip
    fi;
    /* sleep on the event count */
#ifndef BUG_EPOCH_LATE
    e = epoch;
#endif
    sleepers++;
#ifndef BUG_NO_RECHECK
    if
    :: head < tail || phase == DRAINED -> sleepers--; e = 0; goto loop
    :: else -> skip
    fi;
#endif
#ifdef BUG_EPOCH_LATE
    e = epoch;
#endif
    atomic {
        if
        :: epoch == e -> infutex[me] = true
        :: else -> skip
        fi
    }
end_sleep:
    !infutex[me];
    sleepers--;
    e = 0;
    goto loop;
take:
#ifdef GO_RULE
    /* a worker that takes a task while more wait wakes a sleeper unless one
     * spins: what makes trusting the spinner sound */
    if
    :: head < tail && sleepers > 0 && !spinner -> wake_one()
    :: else -> skip
    fi;
#endif
    atomic {
        if
        :: ts[t] == PENDING -> ts[t] = RUNNING_T
        :: else -> assert(ts[t] == CANCELLED); t = 0    /* cancelled while queued: dropped */
        fi
    }
#if STATS
    assert(t != 0);     /* no cancel_futures with STATS: the count would need a dropped column */
#endif
    if
    :: t == 0 -> goto loop
    :: else -> skip
    fi;
#if RDV
    if
    :: t == 1 -> started(ts[2])     /* task 1 ends only once task 2 started */
    :: else -> skip
    fi;
#endif
    atomic { assert(ts[t] == RUNNING_T); ts[t] = FINISHED; t = 0 };
#if STATS
    do
    :: wst[me] = W_FINISHING;
        if
#ifndef BUG_STATS_NO_PARK
        :: freeze -> wst[me] = W_PARKED_ACTIVE; !freeze
#endif
        :: else -> break
        fi
    od;
    atomic { completed[me]++; wst[me] = W_IDLE };
#endif
    goto loop;
retired:
    skip
}

proctype submitter(byte s)
{
    byte t = s + 1;
    byte p = 0;
    bool inside = false;
    do
    :: t <= NTASK ->
again:
        atomic {
            if
            :: !gate_closed -> inflight++; inside = true
            :: else -> inside = false
            fi
        }
        if
        :: inside ->
            atomic {
                assert(ts[t] == NEW); ts[t] = PENDING; ring[tail % NTASK] = t; p = tail; tail++;
#if STATS
                submitted++
#endif
            };
            inflight--;
            inside = false;
            /* the wake policy */
            if
            :: sleepers == 0 -> skip
            :: else ->
#if MONITOR
                /* every worker asleep: nobody could take the task before
                 * a tick, so the submitter wakes one itself, and that is
                 * all it does: the worker it woke looks at the ring, and a
                 * later push beside it makes sure of the monitor.  The code
                 * reads the sleeper count without ordering, so either
                 * branch is open here whatever the count says: a wake
                 * instead of the monitor must be as sound as the monitor */
                if
                :: wake_one()
#ifdef BUG_MONITOR_LEFT_ASLEEP
                :: true -> skip
#else
                :: true ->
                    /* a worker is awake: make sure the monitor is; it
                     * wakes a sleeper if the awake workers stop taking
                     * tasks */
                    atomic {
                        if
#ifdef BUG_MONITOR_TRUST_SPINNER
                        :: spinner -> skip
#endif
                        :: !mon_awake -> mon_awake = true     /* futex_wake(mon) */
                        :: else -> skip
                        fi
                    }
#endif
                fi
#else
                if
                :: head > p -> skip          /* its task was taken within the spin */
#if defined(BUG_TRUST_SPINNER) || defined(TRUST_SPINNER)
                :: spinner -> skip
#endif
#ifndef NO_TRUST_HEAD
                /* every older task was taken, then a spinner is seen: it
                 * takes the head, which is this task or a later one (read in
                 * two steps, in this order, as the code does; the other
                 * order is BUG_TRUST_HEAD_LATE) */
#ifdef BUG_TRUST_HEAD_LATE
                :: spinner ->
                    if
                    :: head >= p -> skip
                    :: else -> wake_one()
                    fi
#else
                :: head >= p ->
                    if
                    :: spinner -> skip
                    :: else -> wake_one()
                    fi
#endif
#endif
#ifdef BUG_TRUST_HEAD_ONLY
                :: head >= p -> skip         /* trusts the awake workers, with no spinner */
#endif
                :: true -> wake_one()        /* the spin ran out */
                fi
#endif
            fi
        :: else ->
#if STATS
            /* the lock path: once it has the lock, a running pool's gate
             * is open again (a snapshot reopens it before unlocking) */
            atomic {
                !lock ->
                if
                :: phase == RUNNING -> assert(!gate_closed); goto again
                :: else -> skip
                fi
            }
#endif
            /* the lock path: a closed gate means shut down here */
            atomic { assert(phase != RUNNING); assert(ts[t] == NEW); ts[t] = REJECTED }
        fi;
        p = 0;
        t = t + NSUB
    :: else -> break
    od;
    /* result() on each of its futures */
    t = s + 1;
    do
    :: t <= NTASK -> settled(ts[t]); t = t + NSUB
    :: else -> break
    od
}

#if MONITOR
/* The monitor thread: while it is awake, each tick (an interval of time
 * passing: any step here may be taken at any moment) it compares the
 * ring's head with the last tick's. A backlog whose head did not move, with
 * a worker asleep and none spinning, means the awake workers are stuck in
 * their tasks: it wakes a sleeper. With nothing queued it may go to sleep:
 * it says so, then looks at the ring again (the Dekker pair with a
 * submitter's push and its look at mon_awake). Asleep, it has no step. */
proctype monitor()
{
    byte last = 0;
    bool woke = false;      /* woke a sleeper since the head last moved */
end_mon:
    do
    :: atomic { mon_awake && head != last -> last = head; woke = false }
    /* one wake per stall here (the code may wake at every tick: more wakes
     * only make more workers take tasks), which keeps the search finite */
    :: atomic { mon_awake && head < tail && head == last && sleepers > 0 && !spinner && !woke -> woke = true }
        -> wake_one()
    /* it sleeps with nothing queued, or with nobody asleep: a worker that
     * registers later looks at the ring again, and a push beside a sleeper
     * wakes the monitor (the code counts such ticks before it sleeps) */
    :: mon_awake && (head == tail || sleepers == 0) ->
        mon_awake = false;
#ifndef BUG_MONITOR_NO_RECHECK
        if
        :: head < tail && sleepers > 0 -> mon_awake = true
        :: else -> skip
        fi
#endif
    od
}
#endif

#if SHUT
proctype shutdown()
{
    bool cancel_futures = false;
    byte t = 0;
    byte i = 0;
    /* a run that never shuts down is explored too: there, no wake_all()
     * comes to rescue work the wake policy stranded */
    if
    :: goto no_shutdown
    :: cancel_futures = false
    :: cancel_futures = true
    fi;
    atomic {
#if STATS
        !lock -> lock = true;
#endif
        phase = SHUTDOWN; gate_closed = true
    };
#ifndef BUG_NO_INFLIGHT_WAIT
    inflight == 0;
#endif
    if
    :: cancel_futures ->
        atomic {
            do
            :: head < tail ->
                t = ring[head % NTASK]; head++;
                assert(ts[t] == PENDING);
                ts[t] = CANCELLED
            :: else -> t = 0; break
            od
        }
    :: else -> skip
    fi;
    phase = DRAINED;
#if STATS
    lock = false;
#endif
    wake_all();
    terminated;                     /* shutdown(wait) */
    i = 1;
    do
    :: i <= NTASK -> assert(ts[i] != PENDING && ts[i] != RUNNING_T); i++
    :: else -> break
    od;
no_shutdown:
    skip
}
#endif

#if STATS
/* stats(): under the lock, close the gate and wait until no submitter is
 * inside it, freeze the workers' pops and counts, wait until none is between
 * saying TAKING or FINISHING and looking at `freeze`, read every counter
 * (one load at a time), then thaw and reopen.  The snapshot must add up
 * (EXEC-8): every task submitted is completed, running or queued. */
proctype stats()
{
    byte i = 0;
    byte sub = 0;
    byte comp = 0;
    byte act = 0;
    byte h = 0;
    byte tl = 0;
    atomic { !lock -> lock = true };
    if
    :: phase == RUNNING ->
        gate_closed = true;
#ifndef BUG_STATS_NO_GATE
        inflight == 0;
#endif
        freeze = true;
#ifndef BUG_STATS_NO_WAIT
        do
        :: i < W -> (wst[i] != W_TAKING && wst[i] != W_FINISHING); i++
        :: else -> i = 0; break
        od;
#endif
        sub = submitted;
        h = head;
        tl = tail;
        do
        :: i < W ->
            if
            /* a worker met ACTIVE by the wait above may have ended its task
             * since: FINISHING, it will park before counting it */
#ifdef BUG_STATS_FINISHING_IDLE
            :: wst[i] == W_ACTIVE || wst[i] == W_PARKED_ACTIVE -> act++
#else
            :: wst[i] == W_ACTIVE || wst[i] == W_FINISHING || wst[i] == W_PARKED_ACTIVE -> act++
#endif
            :: else -> skip
            fi;
            comp = comp + completed[i];
            i++
        :: else -> i = 0; break
        od;
        assert(sub == comp + act + (tl - h));      /* EXEC-8 */
        freeze = false;
        gate_closed = false
    :: else -> skip
    fi;
    lock = false
}
#endif

init
{
    byte i = 0;
    atomic {
        do
        :: i < W -> run worker(i); i++
        :: else -> break
        od;
        i = 0;
        do
        :: i < NSUB -> run submitter(i); i++
        :: else -> break
        od;
#if SHUT
        run shutdown();
#endif
#if STATS
        run stats();
#endif
#if MONITOR
        run monitor()
#endif
    }
}
