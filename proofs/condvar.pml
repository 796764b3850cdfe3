/*
 * condvar.pml -- Spin model of keel::Condition's wait/notify protocol.
 *
 * Code modelled: kernel/include/keel/sync/condition.hpp and
 * kernel/src/sync/condition.cpp (Condition::wait_impl, Condition::notify;
 * a Python-like Condition bound to a user lock L, here a keel::Mutex).
 * Each wait() owns a waiter record w (on the waiter's stack) with its own
 * 32-bit futex word w.signaled; the records form a FIFO queue that is only
 * touched while L is held.
 *
 *   wait(deadline):            (caller holds L)
 *       w.signaled = 0; append w to the queue
 *       release L
 *       while w.signaled == 0:
 *           if futex_wait(w.signaled, 0, deadline) == timed_out: break
 *       re-acquire L
 *       if not timed out: return true
 *       if w.signaled != 0: return true    (a notify chose w after the timeout)
 *       remove w from the queue; return false
 *
 *   notify(n):                 (caller holds L)
 *       pop up to n records from the front; for each:
 *           w.signaled = 1; futex_wake(w.signaled, 1)
 *   notify_all() = notify(everyone)
 *
 * Abstractions
 *   - L is an ideal lock (one atomic test-and-set step, blocking while held);
 *     keel::Mutex itself is checked in futex_mutex.pml.
 *   - The queue is a Promela channel of waiter ids; removing a timed-out
 *     waiter from the middle is a random receive (`??`).
 *   - Waiter record i belongs to consumer i; one record per consumer is
 *     enough because a consumer is in at most one wait() at a time.
 *   - Each futex word has at most one sleeper (its owner): asleep[i].
 *     futex_wait and timeouts/spurious returns are modelled as in
 *     futex_mutex.pml (a timeout may happen at any moment while the waiter is
 *     still enqueued on the futex; a wake that dequeued it first wins).
 *   - Memory ordering is not modelled (Relacy models do that).
 *
 * Scenario: NC consumers each do
 *       lock L; while ready == 0: wait(); ready--; unlock L
 * (consumers 0 .. TIMED-1 wait with a deadline and simply re-wait after a
 * timeout), and one producer makes NC items in two batches,
 *       lock L; ready += 1;      notify(1);      unlock L
 *       lock L; ready += NC - 1; notify(NC - 1); unlock L
 * so that every consumer must be served, and notify(n) is exercised with
 * n = 1 and (for NC = 3) n = 2 while more waiters may be queued.
 *
 * Properties
 *   SYNC-2  no lost wake-up: a consumer blocked for ever (asleep on its futex
 *           or anywhere else) once the producer is done is an invalid end
 *           state -- in particular one asleep while an item is available.
 *   SYNC-10 notify(n) wakes at most n waiters: the number of records that one
 *           notify call signals is asserted to be <= n.  And a waiter whose
 *           wait timed out but which was signaled before it got L back counts
 *           as woken: wait() must return true exactly for the waiters that a
 *           notify popped (ghost flag `popped`, assertion at return).
 *   Also asserted: notify only touches a record whose owner is still inside
 *   wait() (the record lives on the waiter's stack), and a timed-out waiter
 *   that was not signaled is still in the queue when it comes to remove
 *   itself.
 *
 * Seeded-bug twins (spin -D<NAME> -a condvar.pml), with the matching C++
 * injection point where there is one:
 *   BUG_NOTIFY_SKIP_WAKE       notify sets w.signaled but never calls
 *                              futex_wake: a sleeping waiter is stranded.
 *                              (condition_notify_skip_wake)
 *   BUG_ENQUEUE_AFTER_RELEASE  wait releases L before appending its record:
 *                              a notify in between finds nobody to wake.
 *                              (condition_enqueue_after_release)
 *   BUG_NOTIFY_IGNORES_N       notify pops every queued waiter whatever n is.
 *                              (condition_notify_ignores_n)
 *   BUG_TIMEOUT_DROPS_SIGNAL   (model only) a waiter whose wait timed out returns
 *                              false (and just drops out of the queue if still
 *                              there) without looking at w.signaled, so a
 *                              notify that popped it in the meantime is lost.
 */

#ifndef NC
#define NC 3              /* consumers; the producer makes NC items */
#endif
#ifndef TIMED
#define TIMED 1           /* consumers 0 .. TIMED-1 use timed waits */
#endif
#ifndef SPURIOUS
#define SPURIOUS 1        /* budget of spurious futex returns, all waiters together */
#endif

#define WOKEN    0
#define MISMATCH 1
#define TIMEDOUT 2

bit  L = 0;                        /* the user's lock */
chan waiters = [NC] of { byte };   /* FIFO queue of waiter records (guarded by L) */
byte signaled[NC];                 /* each record's futex word */
bool asleep[NC];                   /* futex wait queue of signaled[i] (its owner) */
byte spurious_left = SPURIOUS;
byte ready = 0;                    /* items available (guarded by L) */
byte served = 0;                   /* consumers that got an item */

/* ghost state, only for the assertions */
bool in_wait[NC];                  /* record i exists: consumer i is inside wait() */
bool popped[NC];                   /* record i was popped by a notify in this wait() */

inline lock_L()
{
    atomic { L == 0 -> L = 1 }
}

inline unlock_L()
{
    assert(L == 1);
    L = 0
}

/* futex_wait(signaled[me], 0, deadline) */
inline futex_wait(me, timed, r)
{
    atomic {
        if
        :: signaled[me] != 0 -> r = MISMATCH
        :: else -> asleep[me] = true; r = WOKEN
        fi
    };
    if
    :: r == WOKEN ->
        if
        :: !asleep[me] -> skip               /* a futex_wake dequeued us */
        :: atomic { timed && asleep[me] -> asleep[me] = false; r = TIMEDOUT }
        :: atomic { spurious_left > 0 && asleep[me] -> asleep[me] = false; spurious_left-- }
        fi
    :: else -> skip
    fi
}

/* futex_wake(signaled[w], 1) */
inline futex_wake(w)
{
    assert(in_wait[w]);      /* the record (on the waiter's stack) is still alive */
    atomic {
        if
        :: asleep[w] -> asleep[w] = false
        :: else -> skip
        fi
    }
}

/* Condition::wait: called and returns with L held.  `result` as wait()'s. */
inline cv_wait(me, timed, r, result)
{
    in_wait[me] = true;
#ifndef BUG_ENQUEUE_AFTER_RELEASE
    signaled[me] = 0;
    waiters ! me;
    unlock_L();
#else
    unlock_L();
    signaled[me] = 0;
    waiters ! me;
#endif
    r = WOKEN;
    do
    :: signaled[me] != 0 -> break
    :: else ->
        futex_wait(me, timed, r);
        if
        :: r == TIMEDOUT -> break
        :: else -> r = WOKEN
        fi
    od;
    lock_L();
#ifndef BUG_TIMEOUT_DROPS_SIGNAL
    if
    :: r != TIMEDOUT -> result = true       /* the loop saw w.signaled != 0 */
    :: else ->
        if
        :: signaled[me] != 0 -> result = true  /* a notify chose us after the timeout */
        :: else ->
            assert(waiters ?? [eval(me)]);  /* not popped, so still queued */
            waiters ?? eval(me);            /* unlink(&w) */
            result = false
        fi
    fi;
#else
    if
    :: r == TIMEDOUT ->
        if
        :: waiters ?? [eval(me)] -> waiters ?? eval(me)
        :: else -> skip
        fi;
        result = false
    :: else -> result = true
    fi;
#endif
    /* SYNC-10: true exactly when a notify popped (signaled) this waiter */
    assert(result == popped[me]);
    d_step { in_wait[me] = false; popped[me] = false; signaled[me] = 0; r = WOKEN }
}

/* Condition::notify(n): called with L held */
inline cv_notify(n, cnt, w)
{
    cnt = 0;
    do
#ifndef BUG_NOTIFY_IGNORES_N
    :: cnt < n && len(waiters) > 0 ->
#else
    :: len(waiters) > 0 ->
#endif
        waiters ? w;
        d_step { signaled[w] = 1; popped[w] = true; cnt++ };
#ifndef BUG_NOTIFY_SKIP_WAKE
        futex_wake(w);
#endif
        w = 0
    :: else -> break
    od;
    assert(cnt <= n);                        /* SYNC-10 */
    cnt = 0
}

active [NC] proctype consumer()
{
    bool timed = (_pid < TIMED);
    bool result;
    byte r;

    assert(_pid < NC);   /* consumers take pids 0 .. NC-1: the record ids */
    lock_L();
    do
    :: ready > 0 -> break
    :: else -> cv_wait(_pid, timed, r, result); result = false
    od;
    ready--;
    served++;
    unlock_L()
}

active proctype producer()
{
    byte made = 0;   /* items produced so far */
    byte k;          /* items in this batch: 1 first, then the rest */
    byte cnt, w;

    do
    :: made < NC ->
        k = (made == 0 -> 1 : NC - made);
        lock_L();
        ready = ready + k;
        cv_notify(k, cnt, w);               /* notify(k) */
        unlock_L();
        made = made + k;
        k = 0
    :: else -> break
    od
}
