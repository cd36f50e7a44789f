// safetensors I/O on its own (io/safetensors.h): round trips of every kind of
// entry, the exact byte layout, rejection of truncated, overlapping,
// out-of-range and otherwise malformed files, writer argument checks, and
// writes that fail without touching the previous file.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <future>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "temp_files.h"
#include "io/safetensors.h"

namespace fwp {
namespace {

using test::Bytes;
using test::read_bytes;
using test::write_bytes;

// A file made by hand: the 8-byte length, the header text, then `data`.
Bytes make_file(const std::string& header, const Bytes& data) {
  Bytes out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((uint64_t(header.size()) >> (8 * i)) & 0xff);
  return out + header + data;
}

void expect_status(const std::function<void()>& f, fwp_status status, const std::string& what,
                   const std::string& message_part = "") {
  try {
    f();
    ADD_FAILURE() << what << ": expected status " << status;
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), status) << what << ": " << e.what();
    if (!message_part.empty()) {
      EXPECT_NE(std::string(e.what()).find(message_part), std::string::npos) << e.what();
    }
  }
}

// A writer with one tensor of several dtypes and shapes, and metadata.
SafetensorsWriter sample_writer() {
  SafetensorsWriter w;
  w.set_metadata("format", "test");
  w.set_metadata("note", "caf\xc3\xa9");
  w.add_f32("weights", {2, 3}, {1.f, -2.f, 3.5f, 0.f, 1e-30f, -7.25f});
  const int32_t ids[4] = {7, -1, 1 << 30, 0};
  w.add_tensor("ids", "I32", {4}, ids, sizeof ids);
  const double scalar = 3.141592653589793;
  w.add_tensor("scalar", "F64", {}, &scalar, sizeof scalar);
  w.add_f32("empty", {0, 5}, {});
  w.add_f32("bias", {3}, {0.5f, 0.25f, 0.125f});
  return w;
}

TEST(Safetensors, RoundTrip) {
  test::TempDir dir("fwp_safetensors");
  const std::string path = dir.file("t.safetensors");
  sample_writer().write(path);
  const SafetensorsReader r(path);
  EXPECT_EQ(r.metadata().size(), 2u);
  ASSERT_NE(r.find_metadata("note"), nullptr);
  EXPECT_EQ(*r.find_metadata("note"), "caf\xc3\xa9");
  EXPECT_EQ(r.find_metadata("absent"), nullptr);
  EXPECT_EQ(r.read_f32("weights", {2, 3}), (std::vector<float>{1.f, -2.f, 3.5f, 0.f, 1e-30f, -7.25f}));
  EXPECT_EQ(r.read_f32("bias", {3}), (std::vector<float>{0.5f, 0.25f, 0.125f}));
  EXPECT_TRUE(r.read_f32("empty", {0, 5}).empty());
  ASSERT_EQ(r.tensors().size(), 5u);
  const SafetensorsEntry& ids = r.tensors().at("ids");
  EXPECT_EQ(ids.dtype, "I32");
  EXPECT_EQ(ids.shape, (std::vector<int64_t>{4}));
  EXPECT_EQ(ids.end - ids.begin, 16u);
  EXPECT_TRUE(r.tensors().at("scalar").shape.empty());
  // read_f32 checks name, dtype and shape.
  expect_status([&] { r.read_f32("missing", {1}); }, FWP_ERR_FORMAT, "missing tensor", "missing");
  expect_status([&] { r.read_f32("ids", {4}); }, FWP_ERR_FORMAT, "I32 read as F32", "dtype I32");
  expect_status([&] { r.read_f32("weights", {3, 2}); }, FWP_ERR_FORMAT, "another shape", "shape");
}

TEST(Safetensors, LayoutIsTheReferenceOne) {
  test::TempDir dir("fwp_safetensors");
  const std::string path = dir.file("t.safetensors");
  const SafetensorsWriter w = sample_writer();
  w.write(path);
  const Bytes file = read_bytes(path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(file[i]);
  EXPECT_EQ(n % 8, 0u) << "the data section starts 8-byte aligned";
  EXPECT_EQ(file.substr(8, n), w.header());
  const nlohmann::json h = nlohmann::json::parse(file.substr(8, n));
  EXPECT_EQ(h.at("__metadata__").at("format"), "test");
  // Tensors in the order added, back to back.
  EXPECT_EQ(h.at("weights").at("data_offsets"), nlohmann::json({0, 24}));
  EXPECT_EQ(h.at("ids").at("data_offsets"), nlohmann::json({24, 40}));
  EXPECT_EQ(h.at("scalar").at("data_offsets"), nlohmann::json({40, 48}));
  EXPECT_EQ(h.at("empty").at("data_offsets"), nlohmann::json({48, 48}));
  EXPECT_EQ(h.at("bias").at("data_offsets"), nlohmann::json({48, 60}));
  EXPECT_EQ(h.at("ids").at("dtype"), "I32");
  EXPECT_EQ(h.at("scalar").at("shape"), nlohmann::json::array());
  EXPECT_EQ(file.size(), 8 + n + 60);
  const int32_t third = 1 << 30;
  EXPECT_EQ(std::memcmp(file.data() + 8 + n + 24 + 8, &third, 4), 0) << "raw little-endian bytes";
  // No metadata: no __metadata__ entry.
  SafetensorsWriter bare;
  bare.add_f32("x", {1}, {2.f});
  EXPECT_FALSE(nlohmann::json::parse(bare.header()).contains("__metadata__"));
}

// Every prefix of a valid file is rejected as a format error, never a crash.
TEST(Safetensors, TruncatedFilesAreFormatErrors) {
  test::TempDir dir("fwp_safetensors");
  const std::string good = dir.file("good.safetensors");
  sample_writer().write(good);
  const Bytes bytes = read_bytes(good);
  const std::string bad = dir.file("bad.safetensors");
  for (size_t len = 0; len < bytes.size(); ++len) {
    write_bytes(bad, bytes.substr(0, len));
    expect_status([&] { SafetensorsReader r(bad); }, FWP_ERR_FORMAT, "truncated to " + std::to_string(len));
  }
  write_bytes(bad, bytes);
  EXPECT_NO_THROW(SafetensorsReader r(bad));
  expect_status([&] { SafetensorsReader r(dir.file("absent")); }, FWP_ERR_IO, "absent file", "absent");
}

TEST(Safetensors, MalformedHeadersAreFormatErrors) {
  test::TempDir dir("fwp_safetensors");
  const std::string path = dir.file("bad.safetensors");
  const Bytes data16(16, '\x01');
  auto entry = [](const std::string& dtype, const nlohmann::json& shape, uint64_t b, uint64_t e) {
    return nlohmann::json{{"dtype", dtype}, {"shape", shape}, {"data_offsets", {b, e}}};
  };
  struct Case {
    std::string what;
    Bytes file;
    std::string message;
  };
  std::vector<Case> cases;
  auto with = [&](const std::string& what, const nlohmann::json& header, const Bytes& data, const std::string& msg) {
    cases.push_back({what, make_file(header.dump(), data), msg});
  };
  with("overlapping tensors", {{"a", entry("F32", {3}, 0, 12)}, {"b", entry("F32", {2}, 8, 16)}}, data16, "overlaps");
  with("the same bytes twice", {{"a", entry("F32", {4}, 0, 16)}, {"b", entry("F32", {4}, 0, 16)}}, data16,
       "overlaps");
  with("a gap between tensors", {{"a", entry("F32", {1}, 0, 4)}, {"b", entry("F32", {2}, 8, 16)}}, data16,
       "unused bytes");
  with("trailing bytes", {{"a", entry("F32", {2}, 0, 8)}}, data16, "after the last tensor");
  with("offsets past the end", {{"a", entry("F32", {4}, 4, 20)}}, data16, "outside the data section");
  with("offsets far past the end", {{"a", entry("F32", {4}, uint64_t(1) << 62, (uint64_t(1) << 62) + 16)}},
       data16, "outside");
  with("end before begin", {{"a", entry("F32", {0}, 16, 0)}}, data16, "outside");
  with("offsets that do not match the shape", {{"a", entry("F32", {3}, 0, 16)}}, data16, "do not match");
  with("offsets that do not match the dtype", {{"a", entry("F64", {4}, 0, 16)}}, data16, "larger than");
  with("unknown dtype", {{"a", entry("F31", {4}, 0, 16)}}, data16, "unknown dtype");
  with("negative dimension", {{"a", entry("F32", {-4}, 0, 16)}}, data16, "not a size");
  with("fractional dimension", {{"a", entry("F32", {2.5}, 0, 16)}}, data16, "not a size");
  with("shape product overflowing 64 bits",
       {{"a", entry("U8", {uint64_t(1) << 32, uint64_t(1) << 32, 16}, 0, 16)}}, data16, "larger than");
  with("negative offset", {{"a", nlohmann::json{{"dtype", "F32"}, {"shape", {4}}, {"data_offsets", {-16, 0}}}}},
       data16, "not sizes");
  with("one offset", {{"a", nlohmann::json{{"dtype", "F32"}, {"shape", {4}}, {"data_offsets", {16}}}}}, data16,
       "two data_offsets");
  with("no dtype", {{"a", nlohmann::json{{"shape", {4}}, {"data_offsets", {0, 16}}}}}, data16, "dtype");
  with("entry not an object", {{"a", 5}}, data16, "not an object");
  with("header an array", nlohmann::json::array({1, 2}), data16, "not a JSON object");
  with("metadata not an object", {{"__metadata__", "x"}}, Bytes(), "__metadata__");
  with("metadata value not a string", {{"__metadata__", {{"k", 5}}}}, Bytes(), "not a string");
  cases.push_back({"header not JSON", make_file("{\"a\": ", data16), "not valid JSON"});
  cases.push_back({"header length beyond the file", Bytes("\x40\0\0\0\0\0\0\0{}", 10), "truncated"});
  cases.push_back({"absurd header length", Bytes(8, '\xff') + "{}", "exceeds the limit"});
  cases.push_back({"empty header", make_file("", ""), "too short"});
  for (const Case& c : cases) {
    write_bytes(path, c.file);
    expect_status([&] { SafetensorsReader r(path); }, FWP_ERR_FORMAT, c.what, c.message);
  }
  // The hand-made layout itself is accepted when it is consistent.
  write_bytes(path, make_file(nlohmann::json{{"a", entry("F32", {1}, 0, 4)}, {"b", entry("I32", {3}, 4, 16)},
                                             {"z", entry("F32", {0}, 16, 16)}}
                                  .dump(),
                              data16));
  EXPECT_NO_THROW(SafetensorsReader r(path));
  write_bytes(path, make_file("{}", ""));
  EXPECT_NO_THROW(SafetensorsReader r(path)) << "an empty file with no tensors is valid";
}

TEST(Safetensors, WriterRejectsBadArguments) {
  SafetensorsWriter w;
  w.add_f32("a", {2}, {1.f, 2.f});
  const float four[4] = {};
  expect_status([&] { w.add_f32("a", {2}, {1.f, 2.f}); }, FWP_ERR_INVALID_ARGUMENT, "duplicate", "twice");
  expect_status([&] { w.add_f32("", {1}, {1.f}); }, FWP_ERR_INVALID_ARGUMENT, "empty name", "empty");
  expect_status([&] { w.add_f32("__metadata__", {1}, {1.f}); }, FWP_ERR_INVALID_ARGUMENT, "reserved", "reserved");
  expect_status([&] { w.add_f32("bad\xff", {1}, {1.f}); }, FWP_ERR_INVALID_ARGUMENT, "name not UTF-8", "UTF-8");
  expect_status([&] { w.add_f32("b", {3}, {1.f, 2.f}); }, FWP_ERR_INVALID_ARGUMENT, "too few values", "bytes");
  expect_status([&] { w.add_f32("b", {1}, {1.f, 2.f}); }, FWP_ERR_INVALID_ARGUMENT, "too many values", "bytes");
  expect_status([&] { w.add_f32("b", {-1}, {1.f}); }, FWP_ERR_INVALID_ARGUMENT, "negative dim", "negative");
  expect_status([&] { w.add_tensor("b", "Q8", {4}, four, 4); }, FWP_ERR_INVALID_ARGUMENT, "unknown dtype", "dtype");
  expect_status([&] { w.add_tensor("b", "U8", {int64_t(1) << 62, int64_t(1) << 62}, four, 16); },
                FWP_ERR_INVALID_ARGUMENT, "overflowing shape", "fewer");
  expect_status([&] { w.add_tensor("b", "U8", {4}, nullptr, 4); }, FWP_ERR_NULL_POINTER, "NULL data", "NULL");
  expect_status([&] { w.set_metadata("", "x"); }, FWP_ERR_INVALID_ARGUMENT, "empty key", "empty");
  expect_status([&] { w.set_metadata("k", "\xc3"); }, FWP_ERR_INVALID_ARGUMENT, "value not UTF-8", "UTF-8");
  // A rejected call added nothing: the header still has the one tensor.
  const nlohmann::json h = nlohmann::json::parse(w.header());
  EXPECT_EQ(h.size(), 1u);
  // A header over the bound is refused before anything is written.
  SafetensorsWriter big;
  big.set_metadata("huge", std::string(kMaxSafetensorsHeaderBytes, 'x'));
  test::TempDir dir("fwp_safetensors");
  expect_status([&] { big.write(dir.file("big")); }, FWP_ERR_INVALID_ARGUMENT, "header too large", "exceed");
  struct stat st;
  EXPECT_NE(::stat(dir.file("big").c_str(), &st), 0);
}

TEST(Safetensors, FailedWriteLeavesThePreviousFile) {
  test::TempDir dir("fwp_safetensors");
  const std::string path = dir.file("t.safetensors");
  SafetensorsWriter first;
  first.set_metadata("which", "first");
  first.write(path);
  const Bytes before = read_bytes(path);
  SafetensorsWriter second;
  second.set_metadata("which", "second");
  // A directory that does not exist: creating the temporary file fails.
  expect_status([&] { second.write(dir.file("no/such/dir")); }, FWP_ERR_IO, "missing directory", "cannot create");
  EXPECT_EQ(read_bytes(path), before);
  // The rename fails over a directory: the temporary file is removed.
  const std::string dir_target = dir.file("a_directory");
  ASSERT_EQ(::mkdir(dir_target.c_str(), 0755), 0);
  expect_status([&] { second.write(dir_target); }, FWP_ERR_IO, "rename over a directory", "rename");
  EXPECT_EQ(read_bytes(path), before);
  for (const std::string& name : test::list_dir(dir.path())) {
    EXPECT_EQ(name.find(".tmp."), std::string::npos) << "a temporary file was left: " << name;
  }
  expect_status([&] { second.write(""); }, FWP_ERR_INVALID_ARGUMENT, "empty path", "path");
  second.write(path);
  EXPECT_EQ(*SafetensorsReader(path).find_metadata("which"), "second");
}

// ---- hostile files (issue 10) -----------------------------------------------------------------------

// Nesting deep enough that any recursive walk (dump, compare, destroy) of the
// parsed value would overflow the stack.
std::string deeply_nested(size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }

TEST(SafetensorsHostile, DeeplyNestedJsonIsRefusedBeforeAnyRecursion) {
  test::TempDir dir("fwp_safetensors");
  const std::string path = dir.file("nested.safetensors");
  const std::string deep = deeply_nested(1000000);
  const std::vector<std::string> headers = {
      "{\"a\": " + deep + "}", "{\"__metadata__\": " + deep + "}",
      "{\"a\": {\"dtype\": \"F32\", \"shape\": " + deep + ", \"data_offsets\": [0, 0]}}"};
  for (const std::string& header : headers) {
    write_bytes(path, make_file(header, ""));
    expect_status([&] { SafetensorsReader r(path); }, FWP_ERR_FORMAT, "deep nesting", "nests deeper than 32");
  }
  // 32 levels are fine as JSON (then refused as a tensor entry, not for nesting).
  write_bytes(path, make_file("{\"a\": " + deeply_nested(31) + "}", ""));
  expect_status([&] { SafetensorsReader r(path); }, FWP_ERR_FORMAT, "31 levels", "not an object");
}

TEST(SafetensorsHostile, RepeatedKeysAreRefused) {
  test::TempDir dir("fwp_safetensors");
  const std::string path = dir.file("dup.safetensors");
  const std::string a = R"("a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]})";
  write_bytes(path, make_file("{" + a + ", " + a + "}", Bytes(4, '\0')));
  expect_status([&] { SafetensorsReader r(path); }, FWP_ERR_FORMAT, "tensor twice", "has the key \"a\" twice");
  write_bytes(path, make_file(R"({"__metadata__": {"k": "1", "k": "2"}})", ""));
  expect_status([&] { SafetensorsReader r(path); }, FWP_ERR_FORMAT, "metadata key twice", "twice");
  write_bytes(path, make_file(R"({"a": {"dtype": "F32", "dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})",
                              Bytes(4, '\0')));
  expect_status([&] { SafetensorsReader r(path); }, FWP_ERR_FORMAT, "member twice", "twice");
}

TEST(SafetensorsHostile, FileContentInMessagesIsShortAndEscaped) {
  test::TempDir dir("fwp_safetensors");
  const std::string path = dir.file("long.safetensors");
  const std::string long_name = std::string(1 << 20, 'n') + "\n\x01";
  const std::vector<std::string> headers = {
      nlohmann::json{{long_name, {{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {0, 8}}}}}.dump(),
      nlohmann::json{{"a", {{"dtype", long_name}, {"shape", {1}}, {"data_offsets", {0, 4}}}}}.dump(),
      nlohmann::json{{"__metadata__", {{long_name, 5}}}}.dump(),
      nlohmann::json{{"a", {{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {0, 4}}}},
                     {long_name, {{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {0, 4}}}}}
          .dump()};
  for (const std::string& header : headers) {
    write_bytes(path, make_file(header, Bytes(4, '\0')));
    try {
      SafetensorsReader r(path);
      ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
      const std::string message = e.what();
      EXPECT_EQ(e.status(), FWP_ERR_FORMAT) << message.substr(0, 300);
      EXPECT_LT(message.size(), 400u + path.size()) << message.substr(0, 300);
      EXPECT_NE(message.find("bytes)"), std::string::npos) << "says that it cut: " << message;
      for (char c : message) {
        EXPECT_TRUE(c >= 0x20 && c < 0x7f) << "unescaped byte in " << message;
      }
    }
  }
}

TEST(SafetensorsHostile, SpecialFilesAreRefusedWithoutBlocking) {
  test::TempDir dir("fwp_safetensors");
  const std::string fifo = dir.file("fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0);
  // A FIFO with no writer: before the fix open() waited for one forever. If it
  // blocks, the test opens a writer itself so that the thread can end.
  auto attempt = std::async(std::launch::async, [&] {
    expect_status([&] { SafetensorsReader r(fifo); }, FWP_ERR_IO, "FIFO", "not a regular file");
  });
  if (attempt.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    ADD_FAILURE() << "reading a FIFO blocked";
    const int w = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
    if (w >= 0) ::close(w);
  }
  attempt.wait();
  expect_status([&] { SafetensorsReader r(dir.path()); }, FWP_ERR_IO, "directory", "not a regular file");
  expect_status([&] { SafetensorsReader r("/dev/zero"); }, FWP_ERR_IO, "device", "not a regular file");
}

TEST(SafetensorsHostile, TensorsComeFromTheFileThatWasOpened) {
  // An atomic replace after the reader opened the file does not mix files:
  // the header and every tensor come from one open descriptor.
  test::TempDir dir("fwp_safetensors");
  const std::string path = dir.file("t.safetensors");
  SafetensorsWriter old_file;
  old_file.add_f32("w", {2}, {1.f, 2.f});
  old_file.write(path);
  SafetensorsReader reader(path);
  SafetensorsWriter new_file;
  new_file.add_f32("w", {2}, {3.f, 4.f});
  new_file.write(path);
  EXPECT_EQ(reader.read_f32("w", {2}), (std::vector<float>{1.f, 2.f}));
  EXPECT_EQ(SafetensorsReader(path).read_f32("w", {2}), (std::vector<float>{3.f, 4.f}));
}

}  // namespace
}  // namespace fwp
