/**
 * \file state.h
 * \brief Run state apart from the weights: the fast weights (or softmax key/value
 *        caches) of N sequences, for a layer or for every attention layer of a model.
 *
 * Part of the fwp C API; `#include <fwp/fwp.h>` brings in all of it. The
 * conventions (status codes, ownership, config structs, threads) are stated
 * once in fwp.h.
 */
#ifndef FWP_STATE_H
#define FWP_STATE_H

#include "fwp/layer.h"
#include "fwp/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------- */
/** \defgroup state Run state
 *
 * An ::fwp_state holds what attention layers carry from one call to the next
 * for `batch` sequences (rows), apart from the layers' weights (as llama.h keeps
 * its context apart from its model): per attention layer, either the fast
 * weights W [batch][H][d_head][d_dot] and the normaliser z [batch][H][d_dot]
 * (fast-weight layers), or a key/value cache that grows by one position per
 * step (softmax layers). Several states can run against one layer or model
 * (e.g. the hypotheses of a beam search); a state can be copied, reset, and
 * its rows reordered. A state lives in the memory of the device of the layer
 * or model it was made for, and keeps that layer or model alive (handles may be
 * destroyed in any order).
 *
 * A state is used like any other handle: not by two threads at once, and not
 * while a layer or model call that received it is running on another thread.
 *  @{ */

/** \brief The run state of N sequences for a layer or for the attention layers of a model. */
typedef struct fwp_state fwp_state;

/**
 * \brief Creates a zero state of `batch` rows for one layer (one attention layer in the state).
 * \param[in]  layer The layer; the state keeps it alive and runs with it (or any layer of
 *                   the same kind and sizes on the same device).
 * \param[in]  batch Rows B >= 1.
 * \param[out] out   Receives the state, owned by the caller (fwp_state_destroy()); NULL on failure.
 * \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_INVALID_ARGUMENT (batch) or FWP_ERR_OUT_OF_MEMORY.
 */
FWP_API fwp_status fwp_state_create_for_layer(const fwp_layer* layer, int64_t batch, fwp_state** out);

/**
 * \brief Creates a zero state of `batch` rows for every attention layer of a model, in the model's order.
 *
 * Only kinds of model that carry state between calls have one (e.g. a language
 * model decoding token by token); the retrieval model starts every forward from
 * zero and returns FWP_ERR_UNSUPPORTED.
 * \param[in]  model The model; the state keeps it alive.
 * \param[in]  batch Rows B >= 1.
 * \param[out] out   Receives the state, owned by the caller (fwp_state_destroy()); NULL on failure.
 * \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_INVALID_ARGUMENT (batch), FWP_ERR_UNSUPPORTED
 *         (a kind of model without state) or FWP_ERR_OUT_OF_MEMORY.
 */
FWP_API fwp_status fwp_state_create(const fwp_model* model, int64_t batch, fwp_state** out);

/**
 * \brief Destroys a state.
 * \param[in] state The state; NULL is a no-op.
 */
FWP_API void fwp_state_destroy(fwp_state* state);

/**
 * \brief The number of rows (sequences) of the state.
 * \param[in]  state The state.
 * \param[out] batch Receives B.
 * \return FWP_OK or FWP_ERR_NULL_POINTER.
 */
FWP_API fwp_status fwp_state_batch(const fwp_state* state, int64_t* batch);

/**
 * \brief The number of attention layers the state holds (1 for a layer's state).
 * \param[in]  state The state.
 * \param[out] count Receives the count.
 * \return FWP_OK or FWP_ERR_NULL_POINTER.
 */
FWP_API fwp_status fwp_state_num_layers(const fwp_state* state, int64_t* count);

/**
 * \brief Back to the state of new sequences: zero fast weights, empty caches; the batch is kept.
 * \param[in] state The state.
 * \return FWP_OK or FWP_ERR_NULL_POINTER.
 */
FWP_API fwp_status fwp_state_reset(fwp_state* state);

/**
 * \brief Makes `dst` a copy of `src`.
 * \param[in,out] dst The state to overwrite.
 * \param[in]     src A state of the same shape: made for layers of the same kinds and sizes,
 *                    with the same batch. dst == src is a no-op.
 * \return FWP_OK, FWP_ERR_NULL_POINTER or FWP_ERR_SHAPE_MISMATCH (dst unchanged).
 */
FWP_API fwp_status fwp_state_copy(fwp_state* dst, const fwp_state* src);

/**
 * \brief Reorders the rows: row r of the result is row rows[r] of the state, for r < count.
 *
 * Rows may repeat or be left out, and count becomes the new batch (beam search
 * keeps the states of the surviving hypotheses this way).
 * \param[in,out] state The state.
 * \param[in]     rows  count row indices, each in [0, batch).
 * \param[in]     count The new batch, >= 1.
 * \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_INVALID_ARGUMENT (count) or
 *         FWP_ERR_OUT_OF_RANGE (an index); on error the state is unchanged.
 */
FWP_API fwp_status fwp_state_reorder(fwp_state* state, const int64_t* rows, int64_t count);

/**
 * \brief The sizes of the fast weights of one layer of the state.
 * \param[in]  state   The state.
 * \param[in]  layer   0 <= layer < fwp_state_num_layers().
 * \param[out] w_count Receives B * H * d_head * d_dot (may be NULL).
 * \param[out] z_count Receives B * H * d_dot (may be NULL).
 * \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_OUT_OF_RANGE (layer), or FWP_ERR_UNSUPPORTED
 *         for a softmax layer (its state is a key/value cache).
 */
FWP_API fwp_status fwp_state_size(const fwp_state* state, int64_t layer, int64_t* w_count, int64_t* z_count);

/**
 * \brief Copies the fast weights of one layer out.
 * \param[in]  state   The state.
 * \param[in]  layer   0 <= layer < fwp_state_num_layers().
 * \param[out] w       Receives W, [B][H][d_head][d_dot]; may be NULL.
 * \param[in]  w_count Size of w in floats; must equal B * H * d_head * d_dot when w is not NULL.
 * \param[out] z       Receives z, [B][H][d_dot]; may be NULL.
 * \param[in]  z_count Size of z; must equal B * H * d_dot when z is not NULL.
 * \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_OUT_OF_RANGE, FWP_ERR_SHAPE_MISMATCH (a count),
 *         or FWP_ERR_UNSUPPORTED for a softmax layer.
 */
FWP_API fwp_status fwp_state_get(const fwp_state* state, int64_t layer, float* w, int64_t w_count, float* z,
                                 int64_t z_count);

/**
 * \brief Overwrites the fast weights of one layer.
 * \param[in,out] state   The state.
 * \param[in]     layer   0 <= layer < fwp_state_num_layers().
 * \param[in]     w       W, [B][H][d_head][d_dot] for the state's batch B; NULL means zeros.
 * \param[in]     w_count Must equal B * H * d_head * d_dot (ignored when w is NULL).
 * \param[in]     z       z, [B][H][d_dot]; NULL means zeros.
 * \param[in]     z_count Must equal B * H * d_dot (ignored when z is NULL).
 * \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_OUT_OF_RANGE, FWP_ERR_SHAPE_MISMATCH,
 *         FWP_ERR_INVALID_ARGUMENT (a value that is not finite) or FWP_ERR_UNSUPPORTED for a softmax layer.
 */
FWP_API fwp_status fwp_state_set(fwp_state* state, int64_t layer, const float* w, int64_t w_count,
                                 const float* z, int64_t z_count);

/**
 * \brief The number of positions in one layer's key/value cache (softmax layers).
 * \param[in]  state  The state.
 * \param[in]  layer  0 <= layer < fwp_state_num_layers().
 * \param[out] length Receives the number of tokens the cache holds per row.
 * \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_OUT_OF_RANGE, or FWP_ERR_UNSUPPORTED for a
 *         fast-weight layer (its state has a fixed size).
 */
FWP_API fwp_status fwp_state_cache_length(const fwp_state* state, int64_t layer, int64_t* length);

/**
 * \brief fwp_layer_forward() against an external state: starts from it and leaves the final state in it.
 *
 * The layer's own state is neither read nor changed, whatever its carry_state
 * says. The activations for fwp_layer_backward() are kept as by fwp_layer_forward();
 * the backward's initial-state gradient (fwp_layer_get_state_grad()) is then
 * that of this state. For softmax attention the state's cache must be empty
 * (a new state, or after fwp_state_reset()); it receives the keys and values of
 * this forward, so fwp_layer_step_with_state() can continue the sequences.
 * \param[in]     layer   The layer.
 * \param[in,out] state   A state with one layer, made for a layer of the same kind and sizes
 *                        on the same device (fwp_state_create_for_layer()).
 * \param[in]     x       Input, [batch][seq_len][d_model].
 * \param[in]     batch   Must equal the state's batch.
 * \param[in]     seq_len T >= 1.
 * \param[out]    y       Output, [batch][seq_len][d_model]; must not overlap x.
 * \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_INVALID_ARGUMENT, FWP_ERR_SHAPE_MISMATCH (batch,
 *         or a state made for other sizes), or FWP_ERR_UNSUPPORTED (a non-empty softmax cache).
 */
FWP_API fwp_status fwp_layer_forward_with_state(fwp_layer* layer, fwp_state* state, const float* x,
                                                int64_t batch, int64_t seq_len, float* y);

/**
 * \brief fwp_layer_step() against an external state: one token per row, the state advances.
 * \param[in]     layer The layer.
 * \param[in,out] state A state with one layer made for a layer of the same kind and sizes.
 * \param[in]     x     [batch][d_model].
 * \param[in]     batch Must equal the state's batch.
 * \param[out]    y     [batch][d_model].
 * \return FWP_OK, FWP_ERR_NULL_POINTER, FWP_ERR_INVALID_ARGUMENT or FWP_ERR_SHAPE_MISMATCH.
 */
FWP_API fwp_status fwp_layer_step_with_state(fwp_layer* layer, fwp_state* state, const float* x, int64_t batch,
                                             float* y);

/** @} */

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* FWP_STATE_H */
