/* sattn_sp: sequence-parallel attention over MPI, for sequences too long for one machine.
 *
 * P processes (the ranks of an MPI communicator) each hold a slice of the sequence and
 * compute, together, exactly what sattn_forward / sattn_backward compute for the whole
 * sequence. Two methods:
 *
 *   SATTN_SP_RING     K/V blocks travel around the ring of ranks (P - 1 steps) while
 *                     each rank attends its queries to the block it holds, sending the
 *                     next block during the computation; partial outputs merge exactly
 *                     through their log-sum-exp (sattn_forward_part). Blocks the causal
 *                     or window rule masks entirely are not computed. The backward
 *                     sends dK/dV accumulators around the ring behind the K/V blocks and
 *                     recomputes the probabilities from the saved lse.
 *                     Per rank: memory O(seq / P); it sends (P - 1) K/V blocks per
 *                     forward, the same plus P dK/dV blocks per backward.
 *   SATTN_SP_ULYSSES  an all-to-all swaps the sequence split for a head split (each rank
 *                     gets every row of heads_q / P query heads and the kv heads they
 *                     use: a kv head that several ranks need is sent to each of them,
 *                     so GQA and MQA work), one local attention, an all-to-all back.
 *                     heads_q must divide by P.
 *
 * How the sequence is split (the same for q and for k, v):
 *   SATTN_SP_CONTIGUOUS  rank r holds rows [r n, (r + 1) n), n = seq / P
 *   SATTN_SP_ZIGZAG      the sequence is cut into 2P chunks of c = seq / (2P) rows; rank
 *                        r holds chunk r and then chunk 2P - 1 - r (n = 2c rows), which
 *                        gives every rank the same causal work
 * seq_q and seq_kv must divide by P (contiguous) or 2P (zigzag).
 *
 * Built as its own library (libsattn_sp, linked with libsattn and MPI) so that the
 * core needs no MPI. Plain MPI-3: point-to-point, Alltoall, Allreduce, Bcast.
 */
#ifndef SATTN_SP_H
#define SATTN_SP_H

#include <mpi.h>

#include "sattn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { SATTN_SP_RING = 0, SATTN_SP_ULYSSES = 1 } sattn_sp_method;
typedef enum { SATTN_SP_CONTIGUOUS = 0, SATTN_SP_ZIGZAG = 1 } sattn_sp_shard;

/* out, lse = attention of the whole sequence, each rank computing its rows.
     p     the WHOLE problem, identical on every rank: seq_q and seq_kv are the global
           lengths, and every position rule (causal, window, seqlens_q / seqlens_kv,
           ALiBi, dropout's Philox counters) is applied at global positions, so the
           result is that of one process computing the whole sequence (dropout's mask
           bit for bit). Only the strides may differ between ranks: they lay out this
           rank's shard (all zero: packed [batch][seq / P][heads][dim]).
     q, k, v, out   this rank's shard of each tensor: seq / P rows in shard order (for
           zigzag: chunk r's rows, then chunk 2P - 1 - r's), stored as p->dtype
     lse   f32 packed [batch][heads_q][seq_q / P] in the same row order, or NULL
   Every option of sattn_params is supported except bias, mask and cu_seqlens_q /
   cu_seqlens_kv, which give SATTN_ERR_UNSUPPORTED: bias and mask are seq_q x seq_kv
   per head, which a rank holding seq / P rows cannot be given in O(seq / P) memory
   (they would need to be passed as row slices of the rank's queries and moved with the
   key blocks); a packed batch would need its sequences' boundaries mapped onto shards.
   The internal arithmetic is f32 whatever the storage (shards are converted once, the
   results rounded once at the end), as in sattn_forward.

   Errors are collective: every rank returns the same status, SATTN_OK only if all
   succeeded. A bad argument on any rank (or parameters that differ between ranks,
   which are compared) makes every rank return SATTN_ERR_INVALID with the first failing
   rank's message (sattn_sp_last_error), before any output is written; out of memory on
   any rank gives SATTN_ERR_NOMEM everywhere. Nothing is written on failure. comm must
   be a valid intracommunicator on every rank (MPI_COMM_NULL on one rank returns
   SATTN_ERR_INVALID there, but the others cannot know: they would wait for it).
   Every rank must call with the same method and shard. Each call works on its own
   duplicate of comm (MPI_Comm_dup), so its messages never match the caller's.
   Deterministic for a given P: the same inputs give the same bits (partial results are
   merged in a fixed order). Results differ from the single-process call only by f32
   rounding (merging through f32 lse adds a relative error of about |lse| 2^-24 per
   ring step). MPI errors follow comm's error handler. */
SATTN_API sattn_status sattn_sp_forward(MPI_Comm comm, sattn_sp_method method, sattn_sp_shard shard,
                              const sattn_params *p, const void *q, const void *k, const void *v,
                              void *out, float *lse);

/* dq, dk, dv = the gradients of the whole problem, each rank writing its shard's rows,
   from this rank's shards of q, k, v, out, dout and lse (as sattn_sp_forward returned
   them; lse is required). Same rules as sattn_sp_forward. */
SATTN_API sattn_status sattn_sp_backward(MPI_Comm comm, sattn_sp_method method, sattn_sp_shard shard,
                               const sattn_params *p, const void *q, const void *k, const void *v,
                               const void *out, const float *lse, const void *dout,
                               void *dq, void *dk, void *dv);

/* This thread's message for the last failure of a sattn_sp call ("" if none). On ranks
   that did not fail themselves it names the rank that did. */
SATTN_API const char *sattn_sp_last_error(void);

/* ---- measurement ---- */

/* What this rank's last sattn_sp call did. */
typedef struct sattn_sp_stats {
    double total_s;        /* the call, wall clock */
    double compute_s;      /* in the attention kernels and merges */
    double wait_s;         /* blocked on transfers (the communication not hidden) */
    int64_t bytes_sent;    /* payload this rank sent (point-to-point and all-to-all) */
    int64_t messages_sent; /* point-to-point messages, or all-to-all calls */
    int64_t parts_computed, parts_skipped; /* (query chunk, key chunk) pairs */
    int64_t peak_bytes;    /* the call's own buffers on this rank, at most at once */
} sattn_sp_stats;
SATTN_API void sattn_sp_get_stats(sattn_sp_stats *s);

/* For benchmarks only, process-wide: SATTN_SP_BENCH_NO_COMM runs the ring's loop with
   every transfer skipped (each step computes on the block this rank already holds,
   with the positions of the block it would have received: the same work, wrong
   results); SATTN_SP_BENCH_COMM_ONLY makes the transfers and computes nothing. The
   difference between the normal loop and NO_COMM is the communication not hidden. */
typedef enum { SATTN_SP_BENCH_OFF = 0, SATTN_SP_BENCH_NO_COMM = 1, SATTN_SP_BENCH_COMM_ONLY = 2 } sattn_sp_bench;
SATTN_API void sattn_sp_set_bench_mode(sattn_sp_bench mode);

#ifdef __cplusplus
}
#endif

#endif /* SATTN_SP_H */
