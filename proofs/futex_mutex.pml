/*
 * futex_mutex.pml -- Spin model of keel::Mutex's futex protocol.
 *
 * Code modelled: kernel/include/keel/sync/mutex.hpp (lock, unlock fast
 * paths) and kernel/src/sync/mutex.cpp (lock_contended, unlock_slow).
 *
 * The state word `word` holds
 *     0  unlocked
 *     1  locked, nobody sleeping
 *     2  locked, sleepers may exist
 * Each atomic read-modify-write of the C++ code (compare_exchange_strong,
 * exchange) is one indivisible Promela step; plain loads are one step.
 * Memory ordering is not modelled here (the Relacy models check that).
 * Mutex::spin() is modelled as a single load: spinning only re-reads the
 * word, and every interleaving of that read with the other processes is
 * already explored.
 *
 * The futex is a set of sleepers on `word` (asleep[p]).  futex_wait(word, v)
 * atomically checks word == v and, if so, enqueues the caller; it then
 * returns once a futex_wake has dequeued it, or -- for a timed wait -- when
 * its deadline passes (any time while still enqueued), or spuriously (a
 * global budget of SPURIOUS such returns, so that a lost wake-up still shows
 * up as a process blocked for ever).  A timeout and a wake racing each other
 * resolve as in Linux: whoever dequeues the sleeper first decides the result.
 * futex_wake(word, 1) dequeues any one sleeper (Linux wakes in priority/FIFO
 * order; "any" is a superset of those orders).
 *
 * Processes 0 .. TIMED-1 take the lock with try_lock_for (their waits may
 * time out, after which they skip the critical section, as a failed
 * try_lock_for does); the others use lock().  Every process does ROUNDS
 * lock/unlock rounds.
 *
 * Properties
 *   SYNC-1  mutual exclusion: assertion on the critical-section count `incs`.
 *   SYNC-2  no lost wake-up: a process asleep for ever (or blocked in any
 *           other way) when the others have finished is an invalid end
 *           state.  Checked by the default safety search (no -E).
 *   SYNC-13 (only when compiled with -DLIVENESS) the LTL claim `sync13`,
 *           checked under weak fairness (pan -a -f):
 *               [] <> (incs > 0 || ndone == N)
 *           "at every point, some process will again be in its critical
 *           section, or all processes will have finished their rounds".
 *           As the rounds are finite this amounts to: every weakly fair
 *           execution reaches the state where all N processes have finished
 *           all their rounds (a timed attempt may have given up) -- no
 *           deadlock, no lost wake-up, no livelock in the slow path.  Because
 *           the competition is finite, this also means each lock() call is
 *           eventually served.  It says nothing about a process competing
 *           with others that lock again and again for ever: the mutex barges,
 *           so "a process that tries to lock eventually acquires it" is false
 *           in that setting, and is not claimed.  (The check runs under weak
 *           fairness; for this model the claim also holds without it, i.e.
 *           with plain pan -a.)
 *
 * Seeded-bug twins (spin -D<NAME> -a futex_mutex.pml):
 *   BUG_SKIP_WAKE           unlock never calls futex_wake (the C++ injection
 *                           point mutex_unlock_skip_wake).
 *   BUG_WOKEN_MARKS_LOCKED  once a locker has been round the slow-path loop
 *                           (it has slept), it swaps in 1 instead of 2, so its
 *                           unlock will not wake the remaining sleepers (the
 *                           C++ injection point mutex_woken_marks_locked).
 */

#ifndef N
#define N 3
#endif
#ifndef ROUNDS
#define ROUNDS 2
#endif
#ifndef TIMED
#define TIMED 1
#endif
#ifndef SPURIOUS
#define SPURIOUS 1
#endif

#if N < 2 || N > 4
#error "futex_wake_one below is written out for 2..4 processes"
#endif

#define UNLOCKED  0
#define LOCKED    1
#define CONTENDED 2

/* futex_wait results, as platform::WaitResult */
#define WOKEN    0
#define MISMATCH 1
#define TIMEDOUT 2

byte word = UNLOCKED;        /* the mutex's futex word */
bool asleep[N];              /* the futex wait queue on `word` */
byte spurious_left = SPURIOUS;
byte incs = 0;               /* processes inside the critical section */
byte ndone = 0;              /* processes that finished all rounds */

/* futex_wait(word, expected, deadline) */
inline futex_wait(expected, timed, r)
{
    atomic {
        if
        :: word != expected -> r = MISMATCH
        :: else -> asleep[_pid] = true; r = WOKEN
        fi
    };
    if
    :: r == WOKEN ->
        if
        :: !asleep[_pid] -> skip            /* a futex_wake dequeued us */
        :: atomic { timed && asleep[_pid] -> asleep[_pid] = false; r = TIMEDOUT }
        :: atomic { spurious_left > 0 && asleep[_pid] -> asleep[_pid] = false; spurious_left-- }
        fi
    :: else -> skip
    fi
}

/* futex_wake(word, 1): dequeue one sleeper, if there is any */
inline futex_wake_one()
{
    atomic {
        if
        :: asleep[0] -> asleep[0] = false
        :: asleep[1] -> asleep[1] = false
#if N > 2
        :: asleep[2] -> asleep[2] = false
#endif
#if N > 3
        :: asleep[3] -> asleep[3] = false
#endif
        :: else -> skip
        fi
    }
}

active [N] proctype locker()
{
    byte s;          /* the C++ `s` / `expected` */
    byte old;        /* result of an exchange */
    byte r;          /* futex_wait result */
    byte round = 0;
    bool slept;
    bool timed = (_pid < TIMED);

next_round:
    if
    :: round == ROUNDS -> goto finished
    :: else -> skip
    fi;

    /* lock() / try_lock(): compare_exchange_strong(0 -> 1).  s gets the
     * value seen, so the CAS succeeded iff s == 0. */
    atomic { s = word; if :: s == UNLOCKED -> word = LOCKED :: else -> skip fi };
    if
    :: s == UNLOCKED -> goto acquired
    :: else -> skip
    fi;

    /* lock_contended(deadline) */
    s = word;                                   /* s = spin() */
    if
    :: s == UNLOCKED ->
        /* nobody sleeps: take it as 'locked' (CAS 0 -> 1, s = current on failure) */
        atomic { s = word; if :: s == UNLOCKED -> word = LOCKED :: else -> skip fi };
        if
        :: s == UNLOCKED -> goto acquired
        :: else -> skip
        fi
    :: else -> skip
    fi;
    slept = false;

slow_loop:
    if
    :: s != CONTENDED ->
        atomic {
            old = word;
#ifdef BUG_WOKEN_MARKS_LOCKED
            if
            :: slept -> word = LOCKED
            :: else -> word = CONTENDED
            fi
#else
            word = CONTENDED
#endif
        };
        if
        :: old == UNLOCKED -> goto acquired
        :: else -> old = 0
        fi
    :: else -> skip
    fi;
    s = 0;                                      /* dead until re-read */
    futex_wait(CONTENDED, timed, r);
    if
    :: r == TIMEDOUT ->                        /* try_lock_for returned false */
        atomic { s = 0; old = 0; r = 0; slept = false };
        goto round_done
    :: else -> r = 0
    fi;
    s = word;                                   /* s = spin() */
    slept = true;
    goto slow_loop;

acquired:
    /* s, old, r, slept are dead from here on: clear them so that they do
     * not split otherwise equal states */
    atomic { s = 0; old = 0; r = 0; slept = false };
    incs++;
    assert(incs == 1);                          /* SYNC-1 */
    incs--;

    /* unlock(): exchange(0); wake one sleeper if the word held 2 */
    atomic { old = word; word = UNLOCKED };
    assert(old != UNLOCKED);                    /* we held it, so it was locked */
    if
    :: old == CONTENDED ->
        old = 0;
#ifndef BUG_SKIP_WAKE
        futex_wake_one()
#else
        skip
#endif
    :: else -> old = 0
    fi;

round_done:
    round++;
    goto next_round;

finished:
    ndone++
}

#ifdef LIVENESS
ltl sync13 { [] <> (incs > 0 || ndone == N) }
#endif
