// A non-owning view of a dense, row-major array on a backend (device memory
// for CUDA), with its shape: what modules take and return instead of bare
// pointers plus loose sizes. TensorView<T> for values, TensorView<const
// int32_t> (IdView) for token ids. A view never allocates or frees; the data
// belongs to a Buffer, a parameter block or the caller.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <type_traits>

#include "core/error.h"

namespace fwp {

constexpr int kMaxTensorRank = 4;

// Up to four non-negative extents, outermost first.
class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims) {
    require(dims.size() <= static_cast<size_t>(kMaxTensorRank), FWP_ERR_INTERNAL,
            "Shape: rank " + std::to_string(dims.size()) + " is above the maximum of 4");
    for (int64_t d : dims) {
      require(d >= 0, FWP_ERR_INTERNAL, "Shape: negative extent " + std::to_string(d));
      dims_[static_cast<size_t>(rank_++)] = d;
    }
  }

  int rank() const { return rank_; }
  // Extent i; a negative i counts from the end (-1 is the last dimension).
  int64_t operator[](int i) const {
    const int k = i < 0 ? i + rank_ : i;
    require(k >= 0 && k < rank_, FWP_ERR_INTERNAL,
            "Shape: dimension " + std::to_string(i) + " of a rank-" + std::to_string(rank_) + " shape");
    return dims_[static_cast<size_t>(k)];
  }
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < rank_; ++i) n *= dims_[static_cast<size_t>(i)];
    return n;
  }
  // The last extent (1 for rank 0): the width of one row.
  int64_t cols() const { return rank_ == 0 ? 1 : dims_[static_cast<size_t>(rank_ - 1)]; }
  // Every extent but the last multiplied: the number of rows of width cols().
  int64_t rows() const {
    int64_t n = 1;
    for (int i = 0; i + 1 < rank_; ++i) n *= dims_[static_cast<size_t>(i)];
    return n;
  }

  bool operator==(const Shape& o) const {
    if (rank_ != o.rank_) return false;
    for (int i = 0; i < rank_; ++i)
      if (dims_[static_cast<size_t>(i)] != o.dims_[static_cast<size_t>(i)]) return false;
    return true;
  }
  bool operator!=(const Shape& o) const { return !(*this == o); }

  // "[2, 3, 4]"
  std::string str() const {
    std::string s = "[";
    for (int i = 0; i < rank_; ++i) s += (i ? ", " : "") + std::to_string(dims_[static_cast<size_t>(i)]);
    return s + "]";
  }

 private:
  std::array<int64_t, kMaxTensorRank> dims_{};
  int rank_ = 0;
};

template <typename E>
class TensorView {
 public:
  TensorView() = default;
  TensorView(E* data, Shape shape) : data_(data), shape_(shape) {
    require(data_ != nullptr || shape_.numel() == 0, FWP_ERR_INTERNAL,
            "TensorView: null data for a non-empty shape " + shape_.str());
  }
  // A view of mutable data also reads as a view of const data.
  template <typename U, typename = std::enable_if_t<std::is_same<const U, E>::value>>
  TensorView(const TensorView<U>& o) : data_(o.data()), shape_(o.shape()) {}

  E* data() const { return data_; }
  const Shape& shape() const { return shape_; }
  int rank() const { return shape_.rank(); }
  int64_t dim(int i) const { return shape_[i]; }
  int64_t numel() const { return shape_.numel(); }
  // Seen as a matrix [rows(), cols()] (all leading dimensions flattened).
  int64_t rows() const { return shape_.rows(); }
  int64_t cols() const { return shape_.cols(); }
  E* row(int64_t r) const { return data_ + r * shape_.cols(); }
  // A default-constructed view has no array: what a caller passes for an
  // input gradient it does not need (modules test is_null() before anything else).
  bool is_null() const { return data_ == nullptr; }

  // The same data under another shape with the same number of elements.
  TensorView reshaped(Shape shape) const {
    require(shape.numel() == numel(), FWP_ERR_INTERNAL,
            "TensorView: cannot reshape " + shape_.str() + " to " + shape.str());
    return TensorView(data_, shape);
  }

 private:
  E* data_ = nullptr;
  Shape shape_;
};

template <typename T>
using ConstView = TensorView<const T>;
using IdView = TensorView<const int32_t>;

// Throws Error(FWP_ERR_SHAPE_MISMATCH) "<what> has shape [..] where [..] was expected".
inline void check_shape(const Shape& got, const Shape& expected, const std::string& what) {
  if (got != expected) {
    throw Error(FWP_ERR_SHAPE_MISMATCH, what + " has shape " + got.str() + " where " + expected.str() +
                                            " was expected");
  }
}

// Throws Error(FWP_ERR_SHAPE_MISMATCH) unless the last extent of `got` is `cols`.
inline void check_cols(const Shape& got, int64_t cols, const std::string& what) {
  if (got.rank() < 1 || got.cols() != cols) {
    throw Error(FWP_ERR_SHAPE_MISMATCH, what + " has shape " + got.str() + " where the last dimension must be " +
                                            std::to_string(cols));
  }
}

// A shape with the last extent replaced: the output shape of a row-wise map.
inline Shape with_cols(const Shape& s, int64_t cols) {
  require(s.rank() >= 1, FWP_ERR_INTERNAL, "with_cols of a rank-0 shape");
  switch (s.rank()) {
    case 1: return Shape{cols};
    case 2: return Shape{s[0], cols};
    case 3: return Shape{s[0], s[1], cols};
    default: return Shape{s[0], s[1], s[2], cols};
  }
}

// The shape with one more extent at the end: e.g. ids [B, T] -> embeddings [B, T, dim].
inline Shape append_dim(const Shape& s, int64_t dim) {
  require(s.rank() < kMaxTensorRank, FWP_ERR_INTERNAL, "append_dim to a rank-4 shape");
  switch (s.rank()) {
    case 0: return Shape{dim};
    case 1: return Shape{s[0], dim};
    case 2: return Shape{s[0], s[1], dim};
    default: return Shape{s[0], s[1], s[2], dim};
  }
}

}  // namespace fwp
