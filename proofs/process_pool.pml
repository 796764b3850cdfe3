/*
 * process_pool.pml -- Spin model of keel's ProcessPool supervisor protocol.
 *
 * Code modelled: the supervisor state machine keel::pool::Machine
 * (kernel/include/keel/process_pool/machine.hpp, kernel/src/process_pool/
 * machine.cpp: events in, actions out), the driver rules it relies on
 * (kernel/src/process_pool/process_pool.cpp: a worker's exit is reported only
 * after its channel was read to EOF; the edge refuses submits once the pool
 * broke; the commands accepted before that are handed to the machine even
 * after it terminated), the edge (edge.cpp) and the worker loop (worker.cpp:
 * tasks run in order, each result written before the next task starts).
 * Not modelled: the initializer (init_failed, a starting worker dying with an
 * initializer), the restart window (the limit is count-based: more than R
 * unplanned replacements over the pool's life break it), real time (a
 * timeout may fire at any moment after its task reached the head), chunks,
 * frames and the codec (a message is one byte), exit codes beyond "clean
 * exit after Close" and "anything else", a worker that breaks the protocol.
 *
 * Processes
 *   submitter    submits tasks 1..K through the edge (refused with
 *                BrokenProcessPool once the edge knows the pool broke, else
 *                posted to the inbox); may Future::cancel up to NCANCEL of its
 *                futures at any moment (succeeds only while the future is
 *                pending: the machine has not yet started it); then requests
 *                shutdown(wait), shutdown(cancel_futures) or terminate (a free
 *                choice) and waits until the pool has terminated.
 *   supervisor   the driver thread: the only one that touches the machine.
 *                Each event -- with the machine's reaction and the driver's
 *                execution of the resulting actions (writes to worker pipes,
 *                futures resolved, kills, spawns) -- is one atomic step.  The
 *                pipes never fill (capacity D+1: at most D tasks and a Close;
 *                D results), and the steps other processes race it with (a
 *                future's cancel, a worker's death or result) are single
 *                steps on state the supervisor reads once, so nothing is
 *                hidden by this.
 *   worker[s]    NSLOT process slots, reused by later workers.  A worker
 *                announces READY, then reads its own command pipe cmd[s] (no
 *                shared queue, no lock), runs each task and writes its result
 *                to res[s] before taking the next.  Running a task and writing
 *                its answer is one step: nothing another process can see
 *                happens in between (a kill in between is a death "in the
 *                task", below).  It may die at any point, as long as the
 *                CRASHES budget allows (unlimited by default: the restart
 *                limit then bounds the deaths): before READY, idle, in a task
 *                (after starting it), after a result, with a Close unread.  A
 *                kill stops it at once.  Task TTASK (2) is timed when TIMED:
 *                it may then hang until it is killed.  Death: alive := false,
 *                then EOF.
 *
 * The machine (as machine.cpp; W is the target of ACTIVE = starting or ready
 * workers; live workers may be more: retiring, closing and killing ones):
 *   submit(t)        broken: Resolve(t, Broken); else queue at the back.
 *   ready(s)         starting -> ready.
 *   result(s, t)     t is the head of s's in-flight FIFO: pop, Resolve(value);
 *                    t is s's timed-out task: ignore; broken: ignore.
 *   exited(s)        only once res[s] is drained and EOF seen.  Broken: just
 *                    forget it.  Else planned = retiring or closing, nothing
 *                    in flight, clean exit.  The head (if any) is lost: counted;
 *                    terminating: Resolve(WorkerLost) and the others
 *                    Resolve(Cancelled); else the others go back to the FRONT
 *                    in order, and the head in front of them if it has been
 *                    lost at most N times, else Resolve(WorkerLost).  An
 *                    unplanned death of an ACTIVE worker is replaced while
 *                    spawning is useful (not broken, not terminating, running
 *                    or work queued) and active < W: when R replacements were
 *                    already made the pool breaks instead.
 *   tick(s)          a ready, retiring or closing worker whose head is timed:
 *                    pop it, remember it, Resolve(TimedOut), kill the worker.
 *   shutdown(cf)     running -> shutting down; cf: every queued task
 *                    Resolve(Cancelled).
 *   terminate        terminating; shutdown(true); kill every worker.
 *   broken           every queued and in-flight task Resolve(Broken); kill
 *                    every worker; the driver then tells the edge.
 *   after each event fill (spawn until active = W, while spawning is useful),
 *                    dispatch (the front task, to the READY worker with fewest
 *                    in flight, < D; a timed task only to an empty worker and
 *                    nothing behind a timed one; a task never started is gated
 *                    first: the gate marks its future running, or says it was
 *                    cancelled and it is dropped; a worker sent its M-th task
 *                    gets Close, retires, and fill runs), close_idle (shutting
 *                    down, queue empty: a ready or starting worker with nothing
 *                    in flight gets Close) and the termination check (not
 *                    running, no live worker, nothing queued).  The machine
 *                    calls these at the end of each handler where they can
 *                    have an effect; calling all four after every event is
 *                    the same (where the machine omits one it is a no-op).
 *
 * Properties
 *   POOL-1  every submitted task resolves exactly once: resolve() asserts the
 *           machine resolves a task at most once and its future is set at
 *           most once -- the one second attempt allowed is on a future the
 *           user cancelled while it was queued and never started, where the
 *           driver's resolve must be a no-op; at the end (safety build)
 *           every task is resolved exactly once, no worker is alive or live,
 *           the queue and every pipe are empty.  Liveness (-DLIVENESS,
 *           pan -a -f, weak fairness): ltl pool { <> (terminated &&
 *           every task resolved) } -- see the end of the file.
 *   POOL-2  a task runs at most 1+N times (asserted at every start); a
 *           resolved or cancelled task never starts; a task whose result was
 *           written never runs again and is never reported WorkerLost; a value
 *           is reported only for a task whose result was written.  (The
 *           ghosts runs[] and written[] exist in the safety build only, so
 *           that they do not split the liveness build's states.)
 *   POOL-3  after every event of a running, unbroken pool, active == W;
 *           liveness: the pool eventually terminates.
 *   POOL-5  unplanned replacements never exceed R (asserted at every spawn in
 *           the safety build; a crash loop is an acceptance cycle in the
 *           liveness build, which leaves that assertion out).
 *   POOL-6  at every Send: in flight < D, sent < M (M > 0), a timed task only
 *           to an empty worker.
 *
 * Configuration (-D): W (1..2 workers), K (1..3 tasks), D (1..3, depth), N
 * (retries), M (max_tasks_per_child, 0 = unlimited), R (restart limit), TIMED
 * (0/1), NCANCEL (user cancels, 0..1), CRASHES (worker deaths allowed; 255 =
 * unlimited: the restart limit alone then bounds them), SHUTDOWN_KIND (0:
 * shutdown, shutdown(cancel_futures) or terminate; 1: no terminate), NSLOT
 * (worker process slots, 2W-1, or 2W+1 with M > 0 or TIMED: live workers
 * exceed W while closing, retiring or killed ones finish; a spawn asserts it
 * found a free slot).
 *
 * Seeded-bug twins (spin -D<NAME> -a process_pool.pml); the C++ injection
 * point, where there is one, in parentheses:
 *   BUG_REQUEUE_ONLY_HEAD       on a worker's exit only the head is handled;
 *                               its other in-flight tasks are dropped
 *                               (pool_requeue_only_head).
 *   BUG_EXIT_BEFORE_DRAIN       the driver reports the exit as soon as the
 *                               pidfd says the worker is gone, before reading
 *                               its channel to EOF; unread results are lost:
 *                               a finished task is re-run or reported lost.
 *   BUG_RETRY_UNBOUNDED         a lost head is always re-queued: N is ignored
 *                               (pool_retry_unbounded).
 *   BUG_NO_REPLACE_IN_SHUTDOWN  spawning is useful only while running: a death
 *                               in shutdown re-queues work that no worker will
 *                               ever take (pool_no_replace_in_shutdown).
 *   BUG_RESPAWN_UNLIMITED       the restart limit is never checked: a worker
 *                               that dies while starting is replaced for ever
 *                               (pool_respawn_unlimited).
 *   BUG_TIMEOUT_RESOLVES_TWICE  the late result of a timed-out task is
 *                               resolved again (with its value).
 *   BUG_CANCEL_AFTER_SEND       the gate does not mark the future running: the
 *                               user's cancel still succeeds on a sent task.
 *   BUG_TICK_ONLY_READY         tick looks at READY workers only (the design's
 *                               "for each ready worker" read literally): a
 *                               timed task that hangs on a retiring worker is
 *                               never killed.  Needs TIMED and M > 0.
 *   BUG_SEND_TO_RETIRING        dispatch also picks a retiring worker: it is
 *                               sent more than M tasks.  Needs M > 0.
 */

#ifndef W
#define W 2
#endif
#ifndef K
#define K 3
#endif
#ifndef D
#define D 2
#endif
#ifndef N
#define N 1
#endif
#ifndef M
#define M 0
#endif
#ifndef R
#define R 2
#endif
#ifndef TIMED
#define TIMED 0
#endif
#ifndef NCANCEL
#define NCANCEL 1
#endif
#ifndef CRASHES
#define CRASHES 255
#endif
#ifndef SHUTDOWN_KIND
#define SHUTDOWN_KIND 0
#endif
#ifndef NSLOT
#if M > 0 || TIMED
#define NSLOT (2 * W + 1)
#else
#define NSLOT (2 * W - 1)
#endif
#endif

#if W < 1 || W > 2 || NSLOT > 6 || K < 1 || K > 3 || D < 1 || D > 3 || N > 3 || M > 3 || R > 3 || NCANCEL > 1
#error "unsupported configuration"
#endif

/* worker state, as the machine sees it */
#define WFREE     0     /* exited, or never started: the slot is free */
#define WSTARTING 1
#define WREADY    2
#define WRETIRING 3
#define WCLOSING  4
#define WKILLING  5
#define active(s) (wst[s] == WSTARTING || wst[s] == WREADY)

/* a task's outcome: the final state of its future */
#define ONONE     0
#define OVALUE    1     /* the worker's answer: a value or a remote error */
#define OLOST     2     /* WorkerLost */
#define OTIMEDOUT 3
#define OCANCEL   4     /* Cancelled by shutdown(cancel_futures) or terminate */
#define OUCANCEL  5     /* Future::cancel by the user while it was pending */
#define OBROKEN   6     /* BrokenProcessPool (also a submit the edge refused) */

/* phase */
#define MRUN  0
#define MSHUT 1

/* inbox commands: 1..K submit(t), then these */
#define SHUT_EV     16
#define SHUT_CF_EV  17
#define TERM_EV     18

/* pipe messages. cmd: CLOSE or a task; res: READY or the task answered */
#define CLOSE 0
#define READY 0

/* supervisor events */
#define EV_INBOX 1
#define EV_RES   2
#define EV_EXIT  3
#define EV_TICK  4

#define UNLIMITED 255

/* the machine */
byte wst[NSLOT];
byte infl[NSLOT * D];        /* s's in-flight FIFO: infl[s*D .. s*D+ninfl[s]-1] */
byte ninfl[NSLOT];
byte nsent[NSLOT];           /* tasks sent to this worker (kept only when M > 0) */
byte tout[NSLOT];            /* the task that timed out on this worker, 0 if none */
byte q[K];                   /* the queue: q[0 .. qlen-1] */
byte qlen;
byte nactive;                /* starting or ready */
byte nlive;                  /* not FREE */
byte nrepl;                  /* replacements of unplanned deaths */
bool broken;
bool terminating;
byte mode = MRUN;
bool mterm;                  /* the machine's Terminated */
bool started[K + 1];         /* the gate said yes: the future is running */
bool mres[K + 1];            /* the machine resolved it */
byte lost[K + 1];            /* times it was the head of a worker that died */

/* the edge and the driver */
bool edge_broken;            /* the edge refuses submits: BrokenProcessPool */
bool terminated;             /* the pool's terminated event */

/* worker processes and their pipes */
bool wgo[NSLOT];             /* spawned: a process starts in this slot */
bool alive[NSLOT];           /* the OS process exists */
bool eof[NSLOT];             /* it is gone: EOF after the last byte in res[s] */
bool okexit[NSLOT];          /* it exited cleanly after reading Close */
bool killed[NSLOT];          /* a signal was sent to it */
chan cmd[NSLOT] = [D + 1] of { byte };
chan res[NSLOT] = [D + 1] of { byte };
chan inbox = [K + 1] of { byte };
byte crashes_left = CRASHES;

/* per-task ghosts */
bool sub[K + 1];             /* submitted */
bool running[K + 1];         /* the future is RUNNING: cancel() fails */
bool written[K + 1];         /* a worker wrote its answer */
byte runs[K + 1];            /* times a worker started it */
byte out[K + 1];             /* the future's outcome */
byte nres[K + 1];            /* times the future was set */

/* the timed task: task 2 (task 1 when K == 1), so that it can be a worker's
 * second task, the one that makes it retire when M == 2 */
#if K >= 2
#define TTASK 2
#else
#define TTASK 1
#endif
#define timed(t) (TIMED && (t) == TTASK)

/* Resolve(t, o) and the driver's execution of it */
inline resolve(t, o)
{
    assert(!mres[t]);                          /* POOL-1: the machine resolves once */
    mres[t] = true;
    if
    :: out[t] == OUCANCEL ->
        /* cancelled by the user while pending: the driver's set must be a
         * no-op; only possible for a task the machine never started */
        assert(!started[t] && !running[t])
    :: else ->
        assert(out[t] == ONONE && nres[t] == 0);   /* POOL-1: set once */
#ifndef LIVENESS
        assert(o != OVALUE || written[t]);         /* POOL-2 */
        assert(o != OLOST || !written[t]);         /* POOL-2: a finished task is never lost */
#endif
        out[t] = o;
        nres[t]++
    fi
}

/* remove q[pos] */
inline q_remove_at(pos)
{
    i = pos;
    do
    :: i + 1 < qlen -> q[i] = q[i + 1]; i++
    :: else -> break
    od;
    qlen--;
    q[qlen] = 0;
    i = 0
}

/* insert t at q[pos] */
inline q_insert_at(pos, t)
{
    assert(qlen < K);
    i = qlen;
    do
    :: i > pos -> q[i] = q[i - 1]; i--
    :: else -> break
    od;
    q[pos] = t;
    qlen++;
    i = 0
}

#ifdef BUG_NO_REPLACE_IN_SHUTDOWN
#define spawn_useful (!broken && !terminating && mode == MRUN)
#else
#define spawn_useful (!broken && !terminating && (mode == MRUN || qlen > 0))
#endif

inline spawn(replacement)
{
    x = 0;
    do
    :: x < NSLOT && wst[x] != WFREE -> x++
    :: else -> break
    od;
    assert(x < NSLOT);                         /* (enough slots in the model) */
    assert(!alive[x] && !wgo[x] && !eof[x] && empty(cmd[x]) && empty(res[x]));
    wst[x] = WSTARTING;
    wgo[x] = true;
    nactive++;
    nlive++;
    if
    :: replacement ->
#ifdef BUG_RESPAWN_UNLIMITED
        if
        :: nrepl <= R -> nrepl++               /* saturates at R+1 */
        :: else -> skip
        fi;
#else
        nrepl++;
#endif
#ifndef LIVENESS
        assert(nrepl <= R)                     /* POOL-5 */
#else
        skip
#endif
    :: else -> skip
    fi;
    x = 0
}

inline fill()
{
    if
    :: spawn_useful ->
        do
        :: nactive < W -> spawn(false)
        :: else -> break
        od
    :: else -> skip
    fi
}

inline kill(s)
{
    if
    :: active(s) -> nactive--
    :: else -> skip
    fi;
    wst[s] = WKILLING;
    killed[s] = true
}

inline break_pool()
{
    broken = true;
    do
    :: qlen > 0 ->
        t = q[0];
        q_remove_at(0);
        resolve(t, OBROKEN)
    :: else -> break
    od;
    y = 0;
    do
    :: y < NSLOT ->
        j = 0;
        do
        :: j < ninfl[y] ->
            resolve(infl[y * D + j], OBROKEN);
            infl[y * D + j] = 0;
            j++
        :: else -> break
        od;
        ninfl[y] = 0;
        if
        :: wst[y] != WFREE && wst[y] != WKILLING -> kill(y)
        :: else -> skip
        fi;
        y++
    :: else -> break
    od;
    y = 0; j = 0; t = 0
}

#ifdef BUG_SEND_TO_RETIRING
#define pickable(s) (wst[s] == WREADY || wst[s] == WRETIRING)
#else
#define pickable(s) (wst[s] == WREADY)
#endif

inline dispatch()
{
    do
    :: qlen > 0 && !broken ->
        t = q[0];
        /* pick: the READY worker with the fewest in flight */
        best = NSLOT;
        j = 0;
        do
        :: j < NSLOT ->
            if
            :: pickable(j) && ninfl[j] < D &&
               (ninfl[j] == 0 || !(timed(t) || timed(infl[j * D + ninfl[j] - 1]))) &&
               (best == NSLOT || ninfl[j] < ninfl[best]) -> best = j
            :: else -> skip
            fi;
            j++
        :: else -> break
        od;
        j = 0;
        if
        :: best == NSLOT -> break
        :: else -> skip
        fi;
        q_remove_at(0);
        if
        :: !started[t] && out[t] == OUCANCEL ->
            skip                               /* the gate: cancelled while queued */
        :: else ->
            if
            :: !started[t] ->                  /* the gate: set_running_or_notify_cancel */
                started[t] = true;
#ifndef BUG_CANCEL_AFTER_SEND
                running[t] = true
#else
                skip
#endif
            :: else -> skip
            fi;
            /* Send(best, t) */
            assert(ninfl[best] < D);                       /* POOL-6 */
            assert(M == 0 || nsent[best] < M);             /* POOL-6 */
            assert(!timed(t) || ninfl[best] == 0);         /* POOL-6: alone */
            assert(nfull(cmd[best]));
            infl[best * D + ninfl[best]] = t;
            ninfl[best]++;
            cmd[best]!t;
            if
            :: M > 0 ->
                nsent[best]++;
                if
                :: nsent[best] >= M ->
                    /* retire: Close after its last task; replace it now */
                    nactive--;
                    wst[best] = WRETIRING;
                    cmd[best]!CLOSE;
                    fill()
                :: else -> skip
                fi
            :: else -> skip
            fi
        fi
    :: else -> break
    od;
    t = 0; best = 0
}

inline close_idle()
{
    if
    :: !broken && mode == MSHUT && qlen == 0 ->
        j = 0;
        do
        :: j < NSLOT ->
            if
            :: active(j) && ninfl[j] == 0 ->
                nactive--;
                wst[j] = WCLOSING;
                cmd[j]!CLOSE
            :: else -> skip
            fi;
            j++
        :: else -> break
        od;
        j = 0
    :: else -> skip
    fi
}

inline check_terminated()
{
    if
    :: !mterm && (mode != MRUN || broken) && nlive == 0 && qlen == 0 -> mterm = true
    :: else -> skip
    fi
}

inline shutdown(cf)
{
    mode = MSHUT;
    if
    :: cf ->
        do
        :: qlen > 0 ->
            t = q[0];
            q_remove_at(0);
            resolve(t, OCANCEL)
        :: else -> break
        od;
        t = 0
    :: else -> skip
    fi
}

inline handle_inbox(e)
{
    if
    :: e >= 1 && e <= K ->                         /* submit(t) */
        if
        :: broken -> resolve(e, OBROKEN)
        :: else ->
            assert(qlen < K);
            q[qlen] = e;
            qlen++
        fi
    :: e == SHUT_EV -> shutdown(false)
    :: e == SHUT_CF_EV -> shutdown(true)
    :: e == TERM_EV ->
        terminating = true;
        shutdown(true);
        y = 0;
        do
        :: y < NSLOT ->
            if
            :: wst[y] != WFREE && wst[y] != WKILLING -> kill(y)
            :: else -> skip
            fi;
            y++
        :: else -> break
        od;
        y = 0
    fi
}

inline handle_res(s, m)
{
    if
    :: m == READY ->
        if
        :: wst[s] == WSTARTING -> wst[s] = WREADY
        :: else -> skip                            /* killed or closed meanwhile */
        fi
    :: m != READY && ninfl[s] > 0 && infl[s * D] == m ->
        j = 0;
        do
        :: j + 1 < ninfl[s] -> infl[s * D + j] = infl[s * D + j + 1]; j++
        :: else -> break
        od;
        ninfl[s]--;
        infl[s * D + ninfl[s]] = 0;
        j = 0;
        resolve(m, OVALUE)
    :: m != READY && !(ninfl[s] > 0 && infl[s * D] == m) && m == tout[s] ->
#ifdef BUG_TIMEOUT_RESOLVES_TWICE
        mres[m] = false;
        resolve(m, OVALUE);
#endif
        tout[s] = 0                                /* already resolved: timed out */
    :: m != READY && !(ninfl[s] > 0 && infl[s * D] == m) && m != tout[s] ->
        assert(broken)                             /* in-flight lists were resolved */
    fi;
    m = 0
}

inline handle_exit(s)
{
    /* the driver closes the channel: what s had not read is gone */
    do
    :: nempty(cmd[s]) -> cmd[s]?m
    :: empty(cmd[s]) -> break
    od;
#ifdef BUG_EXIT_BEFORE_DRAIN
    do
    :: nempty(res[s]) -> res[s]?m
    :: empty(res[s]) -> break
    od;
#endif
    m = 0;
    /* forget the worker */
    ws = wst[s];
    if
    :: active(s) -> nactive--
    :: else -> skip
    fi;
    nlive--;
    planned = (ws == WRETIRING || ws == WCLOSING) && ninfl[s] == 0 && okexit[s];
    assert(!okexit[s] || ninfl[s] == 0);           /* it read Close: it answered all */
    wst[s] = WFREE;
    nsent[s] = 0;
    tout[s] = 0;
    okexit[s] = false;
    killed[s] = false;
    eof[s] = false;
    if
    :: broken ->
        assert(ninfl[s] == 0)
    :: else ->
        if
        :: ninfl[s] > 0 ->
            t = infl[s * D];                       /* the head is lost */
            lost[t]++;
            if
            :: terminating ->
                resolve(t, OLOST);
                j = 1;
                do
                :: j < ninfl[s] -> resolve(infl[s * D + j], OCANCEL); j++
                :: else -> break
                od
            :: else ->
                /* the others never started: back to the front, in order */
                ins = 0;
#ifndef BUG_REQUEUE_ONLY_HEAD
                j = 1;
                do
                :: j < ninfl[s] -> q_insert_at(ins, infl[s * D + j]); ins++; j++
                :: else -> break
                od;
#endif
#ifdef BUG_RETRY_UNBOUNDED
                q_insert_at(0, t)
#else
                if
                :: lost[t] <= N -> q_insert_at(0, t)   /* retried, first in line */
                :: else -> resolve(t, OLOST)
                fi
#endif
            fi;
            j = 0;
            do
            :: j < ninfl[s] -> infl[s * D + j] = 0; j++
            :: else -> break
            od;
            ninfl[s] = 0;
            j = 0; t = 0; ins = 0
        :: else -> skip
        fi;
        /* an unplanned death of an active worker: replace it, within the
         * restart limit */
        if
        :: !planned && (ws == WSTARTING || ws == WREADY) && spawn_useful && nactive < W ->
#ifndef BUG_RESPAWN_UNLIMITED
            if
            :: nrepl >= R -> break_pool()
            :: else -> spawn(true)
            fi
#else
            spawn(true)
#endif
        :: else -> skip
        fi
    fi;
    ws = 0; planned = false
}

#ifdef BUG_TICK_ONLY_READY
#define tickable(s) (wst[s] == WREADY)
#else
#define tickable(s) (wst[s] == WREADY || wst[s] == WRETIRING || wst[s] == WCLOSING)
#endif
#define timeout_due(s) (TIMED && !broken && tickable(s) && ninfl[s] > 0 && infl[(s) * D] == TTASK)

inline handle_tick(s)
{
    t = infl[s * D];
    j = 0;
    do
    :: j + 1 < ninfl[s] -> infl[s * D + j] = infl[s * D + j + 1]; j++
    :: else -> break
    od;
    ninfl[s]--;
    infl[s * D + ninfl[s]] = 0;
    j = 0;
    tout[s] = t;
    resolve(t, OTIMEDOUT);
    kill(s);
    t = 0
}

#ifdef BUG_EXIT_BEFORE_DRAIN
#define exit_due(s) (eof[s])
#else
#define exit_due(s) (eof[s] && len(res[s]) == 0)
#endif

#if CRASHES == UNLIMITED
#define can_crash (!killed[me])
#define crash skip
#else
#define can_crash (!killed[me] && crashes_left > 0)
#define crash crashes_left--
#endif

/* a worker starts task m (POOL-2) */
inline start_task(m)
{
    assert(out[m] == ONONE);                       /* never a resolved or cancelled one */
#ifndef LIVENESS
    assert(!written[m]);                           /* never one that finished */
    runs[m]++;
    assert(runs[m] <= 1 + N)
#endif
}

active [NSLOT] proctype worker()
{
    byte me = _pid;          /* workers are processes 0 .. NSLOT-1 */
    byte m;

end_free:
    atomic { wgo[me] -> assert(me < NSLOT); wgo[me] = false; alive[me] = true };
    /* starting */
    if
    :: atomic { killed[me] -> goto dead }
    :: atomic { can_crash -> crash; goto dead }    /* dies before it is ready */
    :: atomic { !killed[me] -> res[me]!READY }
    fi;
idle:
    if
    :: atomic { killed[me] -> goto dead }
    :: atomic { can_crash -> crash; goto dead }    /* idle, after a result, Close unread */
    :: atomic { !killed[me] && cmd[me]?[CLOSE] -> cmd[me]?m; okexit[me] = true; goto dead }
    :: atomic {
           /* runs the next task and writes its answer */
           !killed[me] && nempty(cmd[me]) && !cmd[me]?[CLOSE] ->
           cmd[me]?m;
           start_task(m);
           assert(nfull(res[me]));
           res[me]!m;
#ifndef LIVENESS
           written[m] = true;
#endif
           m = 0
       }
    :: atomic {
           /* starts the next task and dies in it */
           can_crash && nempty(cmd[me]) && !cmd[me]?[CLOSE] ->
           crash;
           cmd[me]?m;
           start_task(m);
           goto dead
       }
    :: atomic {
           /* starts the next task, a timed one, which never returns */
           TIMED && !killed[me] && cmd[me]?[TTASK] ->
           cmd[me]?m;
           start_task(m);
           goto hung
       }
    fi;
    goto idle;
hung:
    atomic { killed[me] -> goto dead };
dead:
    atomic { alive[me] = false; eof[me] = true; m = 0; goto end_free }
}

active proctype supervisor()
{
    byte e, m, t, s, x, y, i, j, best, ins, ws, ev;
    bool planned;

    atomic { fill() };    /* Machine::start */
    do
    :: atomic {
        /* the next event, whichever is ready */
        if
        :: nempty(inbox) -> inbox?e; ev = EV_INBOX
        :: nempty(res[0]) -> res[0]?m; ev = EV_RES; s = 0
        :: exit_due(0) -> ev = EV_EXIT; s = 0
        :: timeout_due(0) -> ev = EV_TICK; s = 0
#if NSLOT > 1
        :: nempty(res[1]) -> res[1]?m; ev = EV_RES; s = 1
        :: exit_due(1) -> ev = EV_EXIT; s = 1
        :: timeout_due(1) -> ev = EV_TICK; s = 1
#endif
#if NSLOT > 2
        :: nempty(res[2]) -> res[2]?m; ev = EV_RES; s = 2
        :: exit_due(2) -> ev = EV_EXIT; s = 2
        :: timeout_due(2) -> ev = EV_TICK; s = 2
#endif
#if NSLOT > 3
        :: nempty(res[3]) -> res[3]?m; ev = EV_RES; s = 3
        :: exit_due(3) -> ev = EV_EXIT; s = 3
        :: timeout_due(3) -> ev = EV_TICK; s = 3
#endif
#if NSLOT > 4
        :: nempty(res[4]) -> res[4]?m; ev = EV_RES; s = 4
        :: exit_due(4) -> ev = EV_EXIT; s = 4
        :: timeout_due(4) -> ev = EV_TICK; s = 4
#endif
#if NSLOT > 5
        :: nempty(res[5]) -> res[5]?m; ev = EV_RES; s = 5
        :: exit_due(5) -> ev = EV_EXIT; s = 5
        :: timeout_due(5) -> ev = EV_TICK; s = 5
#endif
        :: broken && !edge_broken ->
            edge_broken = true; ev = 0        /* the driver tells the edge */
        :: mterm && (!broken || edge_broken) ->
            /* the driver's last take: what the edge accepted before it
             * closed reaches the (broken) machine, which resolves it */
            do
            :: nempty(inbox) ->
                inbox?e;
                if
                :: e >= 1 && e <= K -> assert(broken); resolve(e, OBROKEN)
                :: else -> skip
                fi
            :: empty(inbox) -> break
            od;
            e = 0;
            terminated = true;
            goto done
        fi;
        /* the machine's reaction, and the driver carrying out its actions */
        d_step {
            if
            :: ev == EV_INBOX -> handle_inbox(e)
            :: ev == EV_RES -> handle_res(s, m)
            :: ev == EV_EXIT -> handle_exit(s)
            :: ev == EV_TICK -> handle_tick(s)
            :: else -> skip
            fi;
            /* what every event is followed by (the machine calls these at
             * the end of each handler where they can have an effect; where
             * they cannot -- e.g. fill after a submit to a running pool,
             * which has W active workers -- they are no-ops) */
            fill();
            dispatch();
            close_idle();
            check_terminated();
            /* POOL-3: a running pool keeps W active workers */
            assert(broken || terminating || mode != MRUN || nactive == W);
            e = 0; m = 0; s = 0; ev = 0
        }
       }
    od;
done:
    skip
}

active proctype submitter()
{
    byte t = 1, c, ncancel = NCANCEL, ev;

    do
    :: t <= K ->
        atomic {    /* submit(t) at the edge */
            sub[t] = true;
            if
            :: edge_broken ->                      /* refused: BrokenProcessPool */
                assert(out[t] == ONONE);
                out[t] = OBROKEN;
                nres[t]++;
                mres[t] = true
            :: else -> inbox!t
            fi;
            t++
        }
    :: ncancel > 0 && t > 1 ->
        atomic {    /* Future::cancel() of one of its futures */
            ncancel--;
            select(c : 1 .. t - 1);
            if
            :: out[c] == ONONE && !running[c] ->
#ifndef LIVENESS
                assert(runs[c] == 0);              /* a cancelled task never ran */
#endif
                out[c] = OUCANCEL;
                nres[c]++
            :: else -> skip                        /* cancel() returns false */
            fi;
            c = 0
        }
    :: t > K -> break
    od;
    if
    :: ev = SHUT_EV
    :: ev = SHUT_CF_EV
#if SHUTDOWN_KIND == 0
    :: ev = TERM_EV
#endif
    fi;
    atomic {    /* Edge::request: always accepted */
        if
        :: !terminated -> inbox!ev
        :: else -> skip                            /* broken and gone: nothing reads it */
        fi;
        ev = 0
    };
    terminated;                                    /* wait */
#ifndef LIVENESS
    /* POOL-1: every task resolved exactly once; nothing left behind */
    t = 1;
    do
    :: t <= K ->
        assert(sub[t] && out[t] != ONONE && nres[t] == 1);
        t++
    :: else -> break
    od;
    assert(qlen == 0 && nlive == 0 && nactive == 0 && empty(inbox));
    t = 0;
    do
    :: t < NSLOT ->
        assert(!alive[t] && !wgo[t] && wst[t] == WFREE && ninfl[t] == 0);
        assert(empty(cmd[t]) && empty(res[t]));
        t++
    :: else -> break
    od;
    t = 0
#endif
}

#ifdef LIVENESS
/* POOL-1, POOL-3: under weak fairness every submitted task is eventually
 * resolved and the pool eventually terminates.  Every task is submitted (the
 * submitter never blocks before its shutdown request), an outcome is never
 * undone and `terminated` stays set, so "[] (sub[i] -> <> out[i] != ONONE)
 * for every i, and <> terminated" is the same as this single eventuality,
 * whose automaton is much smaller. */
#if K == 1
#define all_resolved (out[1] != ONONE)
#elif K == 2
#define all_resolved (out[1] != ONONE && out[2] != ONONE)
#else
#define all_resolved (out[1] != ONONE && out[2] != ONONE && out[3] != ONONE)
#endif
ltl pool { <> (terminated && all_resolved) }
#endif
