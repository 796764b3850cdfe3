/*
 * process_pool.pml -- Spin model of keel's ProcessPool supervisor protocol,
 * with exact starts: start slots, revokes and work stealing.
 *
 * Code modelled: the supervisor state machine keel::pool::Machine
 * (kernel/src/process_pool/machine.hpp and machine.cpp: events in, actions
 * out), the start slots behind its StartGate
 * (a word per sent task that parent and worker share), the driver rules the
 * machine relies on (a worker's exit is reported only after its channel was
 * read to EOF; the edge refuses submits once the pool broke; the commands
 * accepted before that are handed to the machine even after it terminated),
 * the edge and the worker loop as the machine's contract states it (the
 * worker takes its frames in order, starts a task only by winning its slot,
 * says so (started) before running it, answers it before it takes the next
 * frame, and says skipped for a frame whose slot it lost).
 * Not modelled: the driver's code itself (the driver.cpp being written: the
 * model states what it must do -- arm a slot at each send, mark a future
 * running at the notice and at a revoke that loses, cancel a pending future
 * only by winning its armed slot, and report an exit only after EOF), a
 * kill's delay (a kill stops the worker at once; the machine kills only
 * after taking back what it can, so every slot a killed worker holds says
 * STARTED or DEAD and a late CAS would find nothing to win), the initializer
 * (init_failed, a starting worker dying with an initializer), the restart
 * window (the limit is count-based: more than R
 * unplanned replacements over the pool's life break it), real time (a
 * timeout may fire at any moment once its task is known to have started),
 * adaptive pipelining (pipeline = 0: the depth is always D), chunks, frames
 * and the codec (a message is one byte), exit codes beyond "clean exit after
 * Close" and "anything else", a worker that breaks the protocol, and the
 * order of the machine's worker list (ties -- the least loaded worker, the
 * most loaded victim -- go to the lowest slot).
 *
 * Where a task is: queued (the machine's queue), sent (in a worker's command
 * pipe, its slot armed SENT), running (its worker won the slot: STARTED) or
 * final (its future is set).  A worker's in-flight list is the sent and
 * running tasks the machine believes it holds, each with the machine's
 * "known started" bit (kst); `stale` are frames the machine took back and
 * the worker has not skipped yet.
 *
 * Processes
 *   submitter    submits tasks 1..K through the edge (refused with
 *                BrokenProcessPool once the edge knows the pool broke, else
 *                posted to the inbox); may Future::cancel up to NCANCEL of its
 *                futures at any moment, before or after its shutdown request;
 *                requests shutdown(wait), shutdown(cancel_futures) or
 *                terminate (a free choice) and waits until the pool has
 *                terminated.  cancel() fails on a final future or one the
 *                driver marked running; else it must win the task's armed
 *                start slot (CAS SENT -> DEAD) if it has one, and fails if the
 *                slot says STARTED; a task with no armed slot (queued, in the
 *                inbox, taken back) is simply cancelled.
 *   supervisor   the driver thread: the only one that touches the machine.
 *                Each event -- with the machine's reaction and the driver's
 *                execution of the resulting actions (writes to worker pipes,
 *                slots armed or revoked, futures resolved, kills, spawns) --
 *                is one atomic step (the Resolve actions are carried out in
 *                order at its end).  The pipes never fill, and the steps
 *                other processes race it with (a cancel, a worker's CAS,
 *                death, notice or answer) are single steps on state the
 *                supervisor reads once, so nothing is hidden by this.
 *   worker[s]    NSLOT process slots, reused by later workers.  A worker
 *                announces READY, then takes the frames of its own command
 *                pipe cmd[s] in order.  For a task frame it CASes the task's
 *                slot SENT -> STARTED: won, it writes the notice started(t)
 *                (a later step), then runs the task and writes its answer (a
 *                later step); lost (DEAD), it drops the frame and writes
 *                skipped(t) in the same step.  It may die at any point, as
 *                long as the CRASHES budget allows (unlimited by default):
 *                before READY, idle (frames unread, a Close unread), between
 *                its CAS and its notice, in the task, after an answer.  A kill
 *                stops it at once.  Task TTASK (2) is timed when TIMED: it may
 *                then hang until it is killed.  Death: alive := false, then
 *                EOF.
 *
 * The machine (as machine.cpp; W is the target of ACTIVE = starting or ready
 * workers; live workers may be more: retiring, closing and killing ones):
 *   revoke(s, t)     (StartGate::revoke) CAS t's slot at s SENT -> DEAD.  Not
 *                    STARTED: true -- it will never start there; s's frame of
 *                    it becomes stale.  STARTED: false -- t is known started
 *                    (the tasks sent to s before it were answered or
 *                    skipped), and the driver marks t's future running.
 *   submit(t)        broken: Resolve(t, Broken); else queue at the back.
 *   ready(s)         starting -> ready.
 *   started(s, t)    t is s's first task: known started; the driver marks its
 *                    future running.  (t timed out meanwhile: ignored.)
 *   skipped(s, t)    a stale frame: forget it.  Else t is s's first task, not
 *                    known started (its user won the slot): back to the FRONT
 *                    of the queue, where the gate drops it (terminating:
 *                    Resolve(Cancelled)).
 *   result(s, t)     t is s's first task: pop, Resolve(value); t is s's
 *                    timed-out task: ignore; broken: ignore.
 *   exited(s)        only once res[s] is drained and EOF seen.  Broken: just
 *                    forget it.  Else planned = retiring or closing, nothing
 *                    in flight, clean exit.  Each task s held: known started,
 *                    or a revoke that loses, means started -- then it is lost
 *                    (counted): retried (back in the queue) up to N times,
 *                    else Resolve(WorkerLost) (terminating: always); else it
 *                    never started there -- back in the queue uncounted
 *                    (terminating: Resolve(Cancelled)).  What goes back goes
 *                    to the FRONT, in the order sent.  An unplanned death of
 *                    an ACTIVE worker is replaced while spawning is useful (not
 *                    broken, not terminating, running or work queued) and
 *                    active < W: when R replacements were already made the
 *                    pool breaks instead.
 *   tick(s)          a ready, retiring or closing worker whose timed task is
 *                    known started: pop it, remember it, Resolve(TimedOut),
 *                    kill the worker.
 *   shutdown(cf)     running -> shutting down; cf: every queued task
 *                    Resolve(Cancelled), and on every worker (one being
 *                    killed too), from the youngest, each task not known
 *                    started is revoked: won, Resolve(Cancelled) (a task
 *                    before a started one may be one its user won).
 *   terminate        terminating; shutdown(true); kill every worker.
 *   broken           every queued and in-flight task Resolve(Broken) (the
 *                    unstarted ones revoked first); kill every worker; the
 *                    driver then tells the edge.
 *   dispatch         send_queued: the front task, to the READY worker with
 *                    fewest in flight (in flight + stale frames < D), none
 *                    that still holds a stale frame of it, nothing behind a
 *                    timed task; the gate
 *                    (StartGate::dispatch) arms its slot SENT, or says its
 *                    future was cancelled and it is dropped; a worker sent its
 *                    M-th task gets Close, retires, and fill runs.  Then, with
 *                    the queue empty, balance: while a READY worker is idle
 *                    (nothing in flight, fewer than D stale frames), the
 *                    youngest task of the most loaded worker (not being
 *                    killed) holding >= 2 whose youngest is not known started
 *                    is revoked; won, it goes to the queue front and
 *                    send_queued runs (the idle worker takes it).
 *   handler tails    as machine.cpp: submit, ready, skipped (a stale frame),
 *                    result and shutdown end with dispatch, close_idle (and
 *                    check_terminated); exited and skipped (its user won)
 *                    with fill, dispatch, close_idle, check_terminated; then the driver's turn
 *                    ends with tick(): fill, dispatch, close_idle.  Each
 *                    event is one driver turn.  (fill: spawn until active =
 *                    W, while spawning is useful; close_idle: shutting down,
 *                    queue empty: a ready or starting worker with nothing in
 *                    flight gets Close; check_terminated: not running, no
 *                    live worker, nothing queued.)
 *
 * Properties
 *   POOL-1  every submitted task resolves exactly once: resolve() asserts the
 *           machine resolves a task at most once and its future is set at
 *           most once -- the one second attempt allowed is on a future the
 *           user cancelled (never started), where the driver's resolve must
 *           be a no-op and the outcome Cancelled or Broken; at the end (safety
 *           build) every task is resolved exactly once, no worker is alive or
 *           live, the queue, every pipe, in-flight list, stale list and slot
 *           are empty.  Liveness (-DLIVENESS, pan -a -f, weak fairness):
 *           ltl pool { <> (terminated && every task resolved) }.
 *   POOL-2  at every start: runs <= 1+N; the future is not final (resolved
 *           or cancelled); the task is not running elsewhere and its answer
 *           was never written.  A value is reported only for a task whose
 *           answer was written; a task whose answer was written is never
 *           reported WorkerLost.  (The ghosts runs[], nrun[] and written[]
 *           exist in the safety build only.)
 *   POOL-3  after every event of a running, unbroken pool, active == W;
 *           liveness: the pool eventually terminates.
 *   POOL-5  unplanned replacements never exceed R (asserted at every spawn in
 *           the safety build; a crash loop is an acceptance cycle in the
 *           liveness build).
 *   POOL-6  at every send: in flight < D, sent < M (M > 0), nothing behind a
 *           timed task.
 *   POOL-7  exact start: a worker starts a task only by winning its slot; a
 *           future is marked running only once its task started (at the
 *           notice, the slot says STARTED); the machine knows a task started
 *           only if it did (at its exit, every known-started task's slot says
 *           STARTED); cancel succeeds exactly until the start -- a successful
 *           cancel finds a task that never started (runs == 0), and a
 *           cancelled task never starts (asserted at every start and at the
 *           end); a cancel that fails on a pending future finds one that
 *           started (runs > 0); a worker is killed only when no slot it holds
 *           is still SENT.
 *   POOL-8  exact loss: at a worker's exit each task it held is counted lost
 *           (retried or WorkerLost) iff its slot there says STARTED; a task
 *           that never started goes back uncounted; lost <= runs.
 *   POOL-9  work conservation (safety build, after every event: the
 *           supervisor is quiescent): while a READY worker is idle (nothing
 *           in flight, no stale frame to skip) and the pool is not broken,
 *           the queue is empty and no worker (not being killed) holds >= 2
 *           tasks whose youngest is not known started.
 *
 * Configuration (-D): W (1..2 workers), K (1..3 tasks), D (1..3, depth), N
 * (retries), M (max_tasks_per_child, 0 = unlimited), R (restart limit), TIMED
 * (0/1), NCANCEL (user cancels, 0..2), CANCEL_LATE (1: a cancel may also
 * come after the shutdown request), CRASHES (worker deaths allowed; 255 =
 * unlimited: the restart limit alone then bounds the deaths of active
 * workers -- see "Deaths of retiring workers" below), SHUTDOWN_KIND (0:
 * shutdown, shutdown(cancel_futures) or terminate; 1: no terminate), NSLOT
 * (worker process slots: 2W (1 when W = 1), or 2W+2 with M > 0 or TIMED:
 * live workers exceed W while closing, retiring or killed ones finish and
 * while a dead one is not yet reported -- and a task its
 * user cancelled, skipped while shutting down, goes back to the queue, for
 * which fill spawns a worker (even if a ready one is there to have the gate
 * drop it at once); a spawn asserts it found a free slot).
 *
 * Two twins reproduce earlier versions of machine.cpp whose flaws this model
 * found: a revoke that lost marked every task sent before it known started,
 * though one of them may have been skipped (its user won its slot), whose
 * skipped() then found it "started" and killed a correct worker as faulty
 * (BUG_MARK_STARTED_THROUGH); and shutdown(cancel_futures) stopped at the
 * first task known started, so under terminate a task before it that its
 * user had won was skipped later and put back in the queue, which no worker
 * would ever take: the pool never terminated
 * (BUG_CANCEL_FUTURES_STOPS_AT_STARTED).
 *
 * Deaths of retiring workers.  A retiring worker (max_tasks_per_child) that
 * dies before starting any of its tasks loses none of them (they go back
 * uncounted), and an unplanned death of a worker that is not active counts
 * against no restart limit: with M > 0 and unlimited crashes, "sent M tasks,
 * retire, die before starting one" repeats for ever, and the liveness check
 * fails.  The M > 0 liveness check therefore bounds the crashes (x<CRASHES>
 * in its name).
 *
 * Seeded-bug twins (spin -D<NAME> -a process_pool.pml); the C++ injection
 * point, where there is one, in parentheses:
 *   BUG_REQUEUE_ONLY_HEAD       on a worker's exit only its first task is
 *                               handled; the others are dropped.
 *   BUG_EXIT_BEFORE_DRAIN       the driver reports the exit as soon as the
 *                               pidfd says the worker is gone, before reading
 *                               its channel to EOF; unread notices and
 *                               answers are lost.
 *   BUG_RETRY_UNBOUNDED         a lost task is always re-queued: N is ignored
 *                               (pool_retry_unbounded).
 *   BUG_NO_REPLACE_IN_SHUTDOWN  spawning is useful only while running: a death
 *                               in shutdown re-queues work that no worker will
 *                               ever take (pool_no_replace_in_shutdown).
 *   BUG_RESPAWN_UNLIMITED       the restart limit is never checked: a worker
 *                               that dies while starting is replaced for ever
 *                               (pool_respawn_unlimited).
 *   BUG_TIMEOUT_RESOLVES_TWICE  the late answer of a timed-out task is
 *                               resolved again (pool_late_result_resolved).
 *   BUG_TICK_ONLY_READY         tick looks at READY workers only: a timed task
 *                               that hangs on a retiring worker is never
 *                               killed.  Needs TIMED and M > 0.
 *   BUG_SEND_TO_RETIRING        dispatch also picks a retiring worker: it is
 *                               sent more than M tasks.  Needs M > 0.
 *   BUG_EXIT_LOSES_UNSTARTED    at a worker's exit every task it held counts
 *                               as started: unstarted ones are lost or
 *                               counted as retries (pool_exit_loses_unstarted).
 *   BUG_CANCEL_IGNORES_SLOT     cancel() succeeds on any pending future the
 *                               driver has not marked running, without winning
 *                               the slot: a started task (CAS done, notice not
 *                               yet read) is cancelled, a sent one still runs.
 *   BUG_REVOKE_WITHOUT_SLOT     the machine's revoke (steal, shutdown
 *                               (cancel_futures), break) assumes it won, without
 *                               the CAS (pool_revoke_without_gate).
 *   BUG_WORKER_IGNORES_DEAD_SLOT the worker runs a task whose slot is DEAD (it
 *                               takes the slot without the CAS).
 *   BUG_GATE_IGNORES_CANCEL     dispatch does not ask the gate: a queued task
 *                               whose future was cancelled is sent and runs
 *                               (pool_gate_not_consulted).
 *   BUG_NO_STEAL                no work stealing: a worker idles while another
 *                               holds a task that waits (pool_no_steal).
 *   BUG_MARK_STARTED_THROUGH    a revoke that loses marks every task sent
 *                               before it known started (an earlier
 *                               machine.cpp's mark_started_through).
 *   BUG_CANCEL_FUTURES_STOPS_AT_STARTED
 *                               shutdown(cancel_futures) takes back tasks from
 *                               the youngest only until one is known started,
 *                               and none from a worker being killed (an
 *                               earlier machine.cpp).
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
#ifndef CANCEL_LATE
#define CANCEL_LATE 1
#endif
#ifndef SHUTDOWN_KIND
#define SHUTDOWN_KIND 0
#endif
#ifndef NSLOT
#if M > 0 || TIMED
#define NSLOT (2 * W + 2)
#elif W == 1
#define NSLOT 1
#else
#define NSLOT (2 * W)
#endif
#endif

#if W < 1 || W > 2 || NSLOT > 6 || K < 1 || K > 3 || D < 1 || D > 3 || N > 3 || M > 3 || R > 3 || NCANCEL > 2
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

/* a start slot: one per (task, worker slot) that holds a frame of the task */
#define SNONE  0        /* no frame of the task there */
#define SSENT  1        /* armed at send */
#define SSTART 2        /* the worker won it: the task started there */
#define SDEAD  3        /* the parent won it (revoke or cancel): it never starts there */
#define slot(t, s) sl[((t) - 1) * NSLOT + (s)]
#define bit(t) (1 << (t))
#define nst(s) (((stale[s] >> 1) & 1) + ((stale[s] >> 2) & 1) + ((stale[s] >> 3) & 1))  /* stale frames */

/* phase */
#define MRUN  0
#define MSHUT 1

/* inbox commands: 1..K submit(t), then these */
#define SHUT_EV     16
#define SHUT_CF_EV  17
#define TERM_EV     18

/* pipe messages.  cmd: CLOSE or a task.  res: READY, an answer (the task),
 * a notice started(t) or skipped(t) */
#define CLOSE 0
#define READY 0
#define NOTICE(t) (4 + (t))
#define SKIP(t)   (8 + (t))
#define is_ans(m)    ((m) >= 1 && (m) <= 3)
#define is_notice(m) ((m) >= 5 && (m) <= 7)
#define is_skip(m)   ((m) >= 9)
#define CMDCAP (K + 1)            /* one frame per task at most, and a Close */
#define RESCAP (2 * K + 1)        /* READY, and per frame a notice and an answer, or a skip */

/* supervisor events */
#define EV_INBOX 1
#define EV_RES   2
#define EV_EXIT  3
#define EV_TICK  4

#define UNLIMITED 255

/* the machine */
byte wst[NSLOT];
byte infl[NSLOT * D];        /* s's in-flight list: infl[s*D .. s*D+ninfl[s]-1], in the order sent */
bool kst[NSLOT * D];         /* ... and whether the machine knows it started */
byte ninfl[NSLOT];
byte stale[NSLOT];           /* bit t: s holds a frame of t that was taken back, not skipped yet */
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
bool mres[K + 1];            /* the machine resolved it */
byte lost[K + 1];            /* times it started on a worker that died */

/* the start slots (shared by parent and workers) */
byte sl[K * NSLOT];

/* the edge and the driver */
bool edge_broken;            /* the edge refuses submits: BrokenProcessPool */
bool terminated;             /* the pool's terminated event */

/* worker processes and their pipes */
bool wgo[NSLOT];             /* spawned: a process starts in this slot */
bool alive[NSLOT];           /* the OS process exists */
bool eof[NSLOT];             /* it is gone: EOF after the last byte in res[s] */
bool okexit[NSLOT];          /* it exited cleanly after reading Close */
bool killed[NSLOT];          /* a signal was sent to it */
chan cmd[NSLOT] = [CMDCAP] of { byte };
chan res[NSLOT] = [RESCAP] of { byte };
chan inbox = [K + 1] of { byte };
byte crashes_left = CRASHES;

/* per-task state of the futures */
bool sub[K + 1];             /* submitted */
bool running[K + 1];         /* the driver marked the future RUNNING: cancel() fails */
byte out[K + 1];             /* the future's outcome */
byte nres[K + 1];            /* times the future was set */

#ifndef LIVENESS
/* per-task ghosts (safety build only) */
bool written[K + 1];         /* a worker wrote its answer */
byte runs[K + 1];            /* times a worker started it (won its slot) */
byte nrun[K + 1];            /* workers running it now: started, not answered, alive */
#endif

/* the timed task: task 2 (task 1 when K == 1), so that it can be a worker's
 * second task, the one that makes it retire when M == 2 */
#if K >= 2
#define TTASK 2
#else
#define TTASK 1
#endif
#define timed(t) (TIMED && (t) == TTASK)

/* Resolve(t, o): the machine's action; the driver carries out the actions
 * of an event, in order, once the machine has handled it (flush_resolves) */
inline resolve(t, o)
{
    assert(!mres[t]);                          /* POOL-1: the machine resolves once */
    mres[t] = true;
    assert(nrq < K);
    rqt[nrq] = t;
    rqo[nrq] = o;
    nrq++
}

/* the driver sets the future of t to o */
inline set_future(t, o)
{
    if
    :: out[t] == OUCANCEL ->
        /* cancelled by its user while pending: the driver's set must be a
         * no-op; only possible for a task that never started */
        assert(o == OCANCEL || o == OBROKEN);  /* POOL-7 */
        assert(!running[t])
#ifndef LIVENESS
        ; assert(runs[t] == 0)                 /* POOL-7 */
#endif
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

inline flush_resolves()
{
    i = 0;
    do
    :: i < nrq -> set_future(rqt[i], rqo[i]); rqt[i] = 0; rqo[i] = 0; i++
    :: else -> break
    od;
    nrq = 0;
    i = 0
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

/* insert tk at q[pos] */
inline q_insert_at(pos, tk)
{
    assert(qlen < K);
    i = qlen;
    do
    :: i > pos -> q[i] = q[i - 1]; i--
    :: else -> break
    od;
    q[pos] = tk;
    qlen++;
    i = 0
}

/* remove s's first in-flight task */
inline infl_pop_front(s)
{
    i = 0;
    do
    :: i + 1 < ninfl[s] ->
        infl[s * D + i] = infl[s * D + i + 1];
        kst[s * D + i] = kst[s * D + i + 1];
        i++
    :: else -> break
    od;
    ninfl[s]--;
    infl[s * D + ninfl[s]] = 0;
    kst[s * D + ninfl[s]] = false;
    i = 0
}

/* remove s's in-flight task k */
inline infl_remove_at(s, k)
{
    i = k;
    do
    :: i + 1 < ninfl[s] ->
        infl[s * D + i] = infl[s * D + i + 1];
        kst[s * D + i] = kst[s * D + i + 1];
        i++
    :: else -> break
    od;
    ninfl[s]--;
    infl[s * D + ninfl[s]] = 0;
    kst[s * D + ninfl[s]] = false;
    i = 0
}

/* remove s's youngest in-flight task */
inline infl_pop_back(s)
{
    ninfl[s]--;
    infl[s * D + ninfl[s]] = 0;
    kst[s * D + ninfl[s]] = false
}

/* Machine::revoke(s, k): take back s's in-flight task k (StartGate::revoke,
 * then the machine's bookkeeping); rv: taken back */
inline revoke(s, k)
{
    r = infl[s * D + k];
#ifdef BUG_REVOKE_WITHOUT_SLOT
    rv = true;
#else
    if
    :: slot(r, s) == SSTART -> rv = false
    :: else -> slot(r, s) = SDEAD; rv = true  /* SENT -> DEAD, or DEAD already: its user won */
    fi;
#endif
    if
    :: rv ->
        stale[s] = stale[s] | bit(r)
    :: else ->
        running[r] = true;                 /* the driver learns the start */
#ifndef BUG_MARK_STARTED_THROUGH
        kst[s * D + k] = true              /* that task started; the ones before
                                            * it were answered or skipped */
#else
        i = 0;                             /* machine.cpp's mark_started_through */
        do
        :: i <= k -> kst[s * D + i] = true; i++
        :: else -> break
        od;
        i = 0
#endif
    fi;
    r = 0
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
    assert(ninfl[x] == 0 && stale[x] == 0);
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
    killed[s] = true;
#ifndef LIVENESS
    /* what it holds started or was taken back: a kill that lands late
     * (the model's is at once) finds no slot to win */
    r = 1;
    do
    :: r <= K -> assert(slot(r, s) != SSENT); r++
    :: else -> break
    od;
#endif
    r = 0
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
            /* unstarted tasks are taken back first, so that none starts
             * after its future said broken */
            if
            :: !kst[y * D + j] -> revoke(y, j)
            :: else -> skip
            fi;
            resolve(infl[y * D + j], OBROKEN);
            j++
        :: else -> break
        od;
        j = 0;
        do
        :: j < ninfl[y] -> infl[y * D + j] = 0; kst[y * D + j] = false; j++
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
    y = 0; j = 0; t = 0; rv = false
}

#ifdef BUG_SEND_TO_RETIRING
#define pickable(s) (wst[s] == WREADY || wst[s] == WRETIRING)
#else
#define pickable(s) (wst[s] == WREADY)
#endif

#ifdef BUG_GATE_IGNORES_CANCEL
#define gate_refuses(t) false
#else
#define gate_refuses(t) (out[t] == OUCANCEL)  /* StartGate::dispatch: its future was cancelled */
#endif

/* Machine::send_queued */
inline send_queued()
{
    do
    :: qlen > 0 && !broken ->
        t = q[0];
        /* pick: the READY worker with the fewest in flight, below D, that
         * holds no stale frame of t, with no timed task last */
        best = NSLOT;
        j = 0;
        do
        :: j < NSLOT ->
            if
            :: pickable(j) && ninfl[j] + nst(j) < D && (stale[j] & bit(t)) == 0 &&
               (ninfl[j] == 0 || !timed(infl[j * D + ninfl[j] - 1])) &&
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
        assert(out[t] == ONONE || out[t] == OUCANCEL);
        if
        :: gate_refuses(t) ->
            skip                               /* dropped: its future is final */
        :: else ->
            /* arm its slot, Send(best, t) */
            assert(ninfl[best] < D);                                           /* POOL-6 */
            assert(M == 0 || nsent[best] < M);                                 /* POOL-6 */
            assert(ninfl[best] == 0 || !timed(infl[best * D + ninfl[best] - 1]));  /* POOL-6 */
            assert(slot(t, best) == SNONE);
            slot(t, best) = SSENT;
            assert(nfull(cmd[best]));
            infl[best * D + ninfl[best]] = t;
            kst[best * D + ninfl[best]] = false;
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
                    assert(nfull(cmd[best]));
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

/* Machine::dispatch: send_queued, then (queue empty) balance -- work
 * stealing: while a READY worker is idle, take back the youngest task of the
 * most loaded worker (not being killed) that holds >= 2 and whose youngest
 * is not known started (nor held stale by the idle one); won, it goes to the
 * queue front and send_queued runs (the idle worker takes it).  Each round
 * moves a task or learns that one started.  Written as one loop, a round of
 * balance per turn, so that send_queued is expanded once; the same rounds
 * as machine.cpp's loop. */
#define victim_ok(v, to) (wst[v] != WFREE && wst[v] != WKILLING && ninfl[v] >= 2 && \
                          !kst[(v) * D + ninfl[v] - 1] && (stale[to] & bit(infl[(v) * D + ninfl[v] - 1])) == 0)

inline dispatch()
{
    do
    :: true ->
        send_queued();
#ifdef BUG_NO_STEAL
        break
#else
        if
        :: broken || qlen > 0 -> break
        :: else -> skip
        fi;
        /* the first idle READY worker that has a victim; the most loaded */
        victim = NSLOT;
        to = 0;
        do
        :: to < NSLOT && victim == NSLOT ->
            if
            :: wst[to] == WREADY && ninfl[to] == 0 && nst(to) < D ->
                v = 0;
                do
                :: v < NSLOT ->
                    if
                    :: victim_ok(v, to) && (victim == NSLOT || ninfl[v] > ninfl[victim]) -> victim = v
                    :: else -> skip
                    fi;
                    v++
                :: else -> break
                od;
                v = 0
            :: else -> skip
            fi;
            to++
        :: else -> break
        od;
        to = 0;
        if
        :: victim == NSLOT -> break
        :: else -> skip
        fi;
        revoke(victim, ninfl[victim] - 1);
        if
        :: rv ->
            t = infl[victim * D + ninfl[victim] - 1];
            infl_pop_back(victim);
            q_insert_at(0, t);                 /* send_queued, next round, sends it */
            t = 0
        :: else -> skip                        /* it started: look again */
        fi;
        rv = false; victim = 0
#endif
    od;
    victim = 0
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
                assert(nfull(cmd[j]));
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
        t = 0;
        /* sent and not started is not started: take those back, cancel them */
        y = 0;
        do
        :: y < NSLOT ->
#ifndef BUG_CANCEL_FUTURES_STOPS_AT_STARTED
            /* every worker, one being killed too (it may still start what
             * it holds until the signal lands); from the youngest, each
             * task not known started is asked about (one before a started
             * task was answered, or skipped: its user won its slot) */
            j = ninfl[y];
            do
            :: j > 0 ->
                j--;
                if
                :: !kst[y * D + j] ->
                    revoke(y, j);
                    if
                    :: rv ->
                        t = infl[y * D + j];
                        infl_remove_at(y, j);
                        resolve(t, OCANCEL);
                        t = 0
                    :: else -> skip
                    fi;
                    rv = false
                :: else -> skip
                fi
            :: else -> break
            od;
#else
            /* an earlier machine.cpp: workers not being killed, from the
             * youngest, until one is known started or a revoke loses */
            j = ninfl[y];
            do
            :: j > 0 && wst[y] != WKILLING && !kst[y * D + j - 1] ->
                j--;
                revoke(y, j);
                if
                :: rv ->
                    t = infl[y * D + j];
                    infl_remove_at(y, j);
                    resolve(t, OCANCEL);
                    t = 0; rv = false
                :: else -> rv = false; break
                fi
            :: else -> break
            od;
#endif
            j = 0;
            y++
        :: else -> break
        od;
        y = 0
    :: else -> skip
    fi;
    hd = true
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
            qlen++;
            hd = true
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
        :: wst[s] == WSTARTING -> wst[s] = WREADY; hd = true
        :: else -> skip                            /* killed or closed meanwhile */
        fi
    :: is_notice(m) ->                             /* started(s, t) */
        t = m - 4;
        if
        :: broken -> skip                          /* in-flight lists were resolved */
        :: !broken && ninfl[s] > 0 && infl[s * D] == t ->
            assert(slot(t, s) == SSTART);          /* POOL-7: running only once started */
            kst[s * D] = true;
            running[t] = true                      /* the driver marks the future */
        :: else ->
            /* only a task that timed out meanwhile (known started from a
             * revoke that lost) can say started late */
            assert(!broken && !(ninfl[s] > 0 && infl[s * D] == t));
            assert(t == tout[s])
        fi;
        t = 0
    :: is_skip(m) ->                               /* skipped(s, t) */
        t = m - 8;
        assert(slot(t, s) == SDEAD);
        if
        :: (stale[s] & bit(t)) != 0 ->             /* a frame taken back: caught up */
            stale[s] = stale[s] ^ bit(t);
            slot(t, s) = SNONE;
            hd = true                              /* dispatch, close_idle: it has room again */
        :: (stale[s] & bit(t)) == 0 && broken -> skip
        :: else ->
            /* its user won the slot: back to the front, where the gate
             * drops it */
            assert(ninfl[s] > 0 && infl[s * D] == t && !kst[s * D]);
            assert(out[t] == OUCANCEL);
            slot(t, s) = SNONE;
            infl_pop_front(s);
            /* never while terminating: terminate's shutdown(true) took back
             * every task not known started, so no frame its user won is
             * left to skip -- a task put back now no worker would take */
#ifndef LIVENESS
            assert(!terminating);
#endif
            q_insert_at(0, t);
            t = 0                                  /* fill, dispatch, close_idle, check_terminated */
        fi;
        t = 0
    :: is_ans(m) && ninfl[s] > 0 && infl[s * D] == m ->   /* result(s, t) */
        assert(kst[s * D]);                        /* its notice came first */
        assert(slot(m, s) == SSTART);
        slot(m, s) = SNONE;
        infl_pop_front(s);
        resolve(m, OVALUE);
        hd = true
    :: is_ans(m) && !(ninfl[s] > 0 && infl[s * D] == m) && m == tout[s] ->
#ifdef BUG_TIMEOUT_RESOLVES_TWICE
        mres[m] = false;
        resolve(m, OVALUE);
#endif
        tout[s] = 0                                /* already resolved: timed out */
    :: is_ans(m) && !(ninfl[s] > 0 && infl[s * D] == m) && m != tout[s] ->
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
    stale[s] = 0;                                  /* its stale frames are gone */
    if
    :: broken ->
        assert(ninfl[s] == 0)
    :: else ->
        /* each task it held started (lost, or retried) or did not (taken
         * back, queued again uncounted): the slot decides */
        ins = 0;
        j = 0;
        do
#ifndef BUG_REQUEUE_ONLY_HEAD
        :: j < ninfl[s] ->
#else
        :: j < ninfl[s] && j == 0 ->
#endif
            t = infl[s * D + j];
            st = kst[s * D + j];
            if
            :: !st ->
#ifdef BUG_EXIT_LOSES_UNSTARTED
                st = true
#else
                if
                :: slot(t, s) == SSTART -> st = true; running[t] = true   /* the revoke lost */
                :: else -> slot(t, s) = SDEAD                              /* taken back */
                fi
#endif
            :: else -> skip
            fi;
            /* POOL-7: known started only if started; POOL-8: lost iff started */
            assert(st == (slot(t, s) == SSTART));
            if
            :: !st ->
                if
                :: terminating -> resolve(t, OCANCEL)
                :: else -> q_insert_at(ins, t); ins++      /* uncounted */
                fi
            :: else ->
                lost[t]++;
#ifndef LIVENESS
                assert(lost[t] <= runs[t]);                /* POOL-8 */
#endif
#ifdef BUG_RETRY_UNBOUNDED
                if
                :: !terminating -> q_insert_at(ins, t); ins++
                :: else -> resolve(t, OLOST)
                fi
#else
                if
                :: !terminating && lost[t] <= N -> q_insert_at(ins, t); ins++   /* retried */
                :: else -> resolve(t, OLOST)
                fi
#endif
            fi;
            j++
        :: else -> break
        od;
        j = 0;
        do
        :: j < ninfl[s] -> infl[s * D + j] = 0; kst[s * D + j] = false; j++
        :: else -> break
        od;
        ninfl[s] = 0;
        j = 0; t = 0; ins = 0; st = false;
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
    /* the worker is gone: so are its slots */
    j = 1;
    do
    :: j <= K -> slot(j, s) = SNONE; j++
    :: else -> break
    od;
    j = 0;
    assert(ninfl[s] == 0);
    ws = 0; planned = false
}

#ifdef BUG_TICK_ONLY_READY
#define tickable(s) (wst[s] == WREADY)
#else
#define tickable(s) (wst[s] == WREADY || wst[s] == WRETIRING || wst[s] == WCLOSING)
#endif
/* the timed task is always a worker's youngest: nothing is sent behind it */
#define timeout_due(s) (TIMED && !broken && tickable(s) && ninfl[s] > 0 && \
                        infl[(s) * D + ninfl[s] - 1] == TTASK && kst[(s) * D + ninfl[s] - 1])

inline handle_tick(s)
{
    t = infl[s * D + ninfl[s] - 1];
    infl_pop_back(s);
    tout[s] = t;
    resolve(t, OTIMEDOUT);
    kill(s);
    t = 0
    /* the tail (fill, dispatch, close_idle) is the driver's per-turn tick */
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

/* a worker won task m's slot and starts it (POOL-2, POOL-7) */
inline start_task(m)
{
    assert(out[m] == ONONE);                       /* never a resolved or cancelled one */
#ifndef LIVENESS
    assert(!written[m]);                           /* never one that finished */
    assert(nrun[m] == 0);                          /* never one running elsewhere */
    runs[m]++;
    nrun[m]++;
    assert(runs[m] <= 1 + N)
#endif
}

#ifndef LIVENESS
#define stop_run(m) nrun[m]--
#define wrote(m) written[m] = true
#else
#define stop_run(m) skip
#define wrote(m) skip
#endif

/* the worker dies, in the step that stops it: the process is gone, EOF
 * follows the bytes it wrote */
inline die()
{
    if
    :: m != 0 -> stop_run(m)
    :: else -> skip
    fi;
    alive[me] = false; eof[me] = true; m = 0;
    goto end_free
}

active [NSLOT] proctype worker()
{
    byte me = _pid;          /* workers are processes 0 .. NSLOT-1 */
    byte m;                  /* the task it started: won, not answered */

end_free:
    /* spawned: starts, and announces READY or dies before it is ready */
    if
    :: atomic { wgo[me] && killed[me] -> wgo[me] = false; die() }
    :: atomic { wgo[me] && can_crash -> crash; wgo[me] = false; die() }
    :: atomic {
           wgo[me] && !killed[me] ->
           wgo[me] = false; alive[me] = true;
           assert(nfull(res[me])); res[me]!READY
       }
    fi;
idle:
    if
    :: atomic { killed[me] -> die() }
    :: atomic { can_crash -> crash; die() }         /* idle: frames or a Close unread */
    :: atomic { !killed[me] && cmd[me]?[CLOSE] -> cmd[me]?m; m = 0; okexit[me] = true; die() }
    :: atomic {
           /* the next frame: CAS its start slot SENT -> STARTED */
           !killed[me] && nempty(cmd[me]) && !cmd[me]?[CLOSE] ->
           cmd[me]?m;
           assert(slot(m, me) == SSENT || slot(m, me) == SDEAD);
#ifndef BUG_WORKER_IGNORES_DEAD_SLOT
           if
           :: slot(m, me) == SSENT ->
#endif
               slot(m, me) = SSTART;
               start_task(m);
               goto won
#ifndef BUG_WORKER_IGNORES_DEAD_SLOT
           :: else ->                               /* lost: drop the frame */
               assert(nfull(res[me]));
               res[me]!SKIP(m);
               m = 0
           fi
#endif
       }
    fi;
    goto idle;
won:
    /* it won the slot: says so, then runs the task */
    if
    :: atomic { killed[me] -> die() }
    :: atomic { can_crash -> crash; die() }         /* between its CAS and its notice */
    :: atomic { !killed[me] -> assert(nfull(res[me])); res[me]!NOTICE(m) }
    fi;
    if
    :: atomic { killed[me] -> die() }
    :: atomic { can_crash -> crash; die() }         /* in the task */
    :: atomic {
           /* runs it and writes its answer */
           !killed[me] ->
           assert(nfull(res[me]));
           res[me]!m;
           wrote(m);
           stop_run(m);
           m = 0;
           goto idle
       }
    :: atomic { timed(m) && !killed[me] -> goto hung }  /* the timed task never returns */
    fi;
hung:
    atomic { killed[me] -> die() }
}

#ifndef LIVENESS
/* POOL-9: while a ready worker idles, nothing waits */
#define idle_ready(s) (wst[s] == WREADY && ninfl[s] == 0 && stale[s] == 0)
#define waits(v) (wst[v] != WFREE && wst[v] != WKILLING && ninfl[v] >= 2 && !kst[(v) * D + ninfl[v] - 1])
inline check_conserving()
{
    if
    :: !broken ->
        y = 0;
        do
        :: y < NSLOT ->
            if
            :: idle_ready(y) ->
                assert(qlen == 0);                 /* POOL-9 */
                v = 0;
                do
                :: v < NSLOT -> assert(!waits(v)); v++   /* POOL-9 */
                :: else -> break
                od;
                v = 0
            :: else -> skip
            fi;
            y++
        :: else -> break
        od;
        y = 0
    :: else -> skip
    fi
}
#endif

active proctype supervisor()
{
    byte e, m, t, s, x, y, i, j, r, best, ins, ws, ev, to, v, victim;
    byte ph, nrq, rqt[K], rqo[K];    /* ph: the tail's phase; the Resolve actions of an event */
    bool planned, rv, st, hd;

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
                :: e >= 1 && e <= K -> assert(broken); resolve(e, OBROKEN); flush_resolves()
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
            /* the handler's tail, then the driver's tick (fill, dispatch,
             * close_idle) that ends its turn.  The handlers' tails are
             * dispatch, close_idle, check_terminated (hd: submit, ready,
             * skipped, result, shutdown) or fill, dispatch, close_idle,
             * check_terminated (exit); the others have none.  Where a
             * handler leaves one of these out, or break_pool and terminate
             * end early, it is a no-op there. */
            ph = 0;
            do
            :: true ->
                if
                :: ph == 1 || !hd -> fill()
                :: else -> skip
                fi;
                if
                :: ph == 1 -> break
                :: else -> skip
                fi;
                dispatch();
                close_idle();
                check_terminated();
                ph = 1
            od;
            ph = 0; hd = false;
            flush_resolves();
            /* POOL-3: a running pool keeps W active workers */
            assert(broken || terminating || mode != MRUN || nactive == W);
#ifndef LIVENESS
            check_conserving();
#endif
            e = 0; m = 0; s = 0; ev = 0
        }
       }
    od;
done:
    skip
}

/* Future::cancel() of task c: fails on a final or running future; else wins
 * its armed slot, if it has one (CAS SENT -> DEAD) */
inline user_cancel(c)
{
    if
    :: out[c] != ONONE -> skip                     /* final: cancel() returns false */
    :: else ->
        /* the slot armed for it, if any (at most one is SENT or STARTED) */
        x = NSLOT;
        y = 0;
        do
        :: y < NSLOT ->
            if
            :: slot(c, y) == SSENT || slot(c, y) == SSTART -> assert(x == NSLOT); x = y
            :: else -> skip
            fi;
            y++
        :: else -> break
        od;
        y = 0;
#ifdef BUG_CANCEL_IGNORES_SLOT
        ok = !running[c];
#else
        ok = !running[c] && (x == NSLOT || slot(c, x) == SSENT);
        if
        :: ok && x < NSLOT -> slot(c, x) = SDEAD   /* won the slot */
        :: else -> skip
        fi;
#endif
        if
        :: ok ->
#ifndef LIVENESS
            assert(runs[c] == 0);                  /* POOL-7: it never started */
#endif
            out[c] = OUCANCEL;
            nres[c]++
        :: else ->
#ifndef LIVENESS
            assert(runs[c] > 0);                   /* POOL-7: it fails only once started */
#endif
            skip
        fi;
        x = 0; ok = false
    fi
}

active proctype submitter()
{
    byte t = 1, c, x, y, ncancel = NCANCEL, ev;
    bool ok, requested;

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
    :: ncancel > 0 && t > 1 && (CANCEL_LATE || !requested) ->
        atomic {    /* Future::cancel() of one of its futures */
            ncancel--;
            select(c : 1 .. t - 1);
            user_cancel(c);
            c = 0
        }
    :: t > K && !requested ->
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
            :: else -> skip                        /* broken and gone: nothing reads it */
            fi;
            ev = 0;
            requested = true
        }
    :: requested -> break
    od;
    terminated;                                    /* wait */
#ifndef LIVENESS
    /* POOL-1: every task resolved exactly once; nothing left behind */
    t = 1;
    do
    :: t <= K ->
        assert(sub[t] && out[t] != ONONE && nres[t] == 1);
        assert(out[t] != OUCANCEL || runs[t] == 0);    /* POOL-7 */
        assert(nrun[t] == 0);
        t++
    :: else -> break
    od;
    assert(qlen == 0 && nlive == 0 && nactive == 0 && empty(inbox));
    t = 0;
    do
    :: t < NSLOT ->
        assert(!alive[t] && !wgo[t] && wst[t] == WFREE && ninfl[t] == 0 && stale[t] == 0);
        assert(empty(cmd[t]) && empty(res[t]));
        t++
    :: else -> break
    od;
    t = 0;
    do
    :: t < K * NSLOT -> assert(sl[t] == SNONE); t++
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
