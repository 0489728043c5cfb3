// SpillStore: least-recently-used spilling, reading back, freeing, and every failure path (an
// unwritable directory, a disk that fills up mid-write, a spilled file that is gone or damaged).
#include <plexus/common/temp_dir.hpp>
#include <plexus/worker/spill_store.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/resource.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace plexus::worker {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

Value blob(std::size_t n, char fill) { return std::make_shared<const Blob>(std::string(n, fill)); }

std::size_t files_in(const fs::path& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) return 0;
  std::size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) n += e.is_regular_file() ? 1 : 0;
  return n;
}

class SpillStoreTest : public ::testing::Test {
 protected:
  TempDir tmp{"plexus-spill-test"};
  fs::path dir = tmp.path() / "worker";
};

TEST_F(SpillStoreTest, SpillsLeastRecentlyUsedFirstAndReadsBack) {
  SpillStore store(dir);
  store.put("a", blob(100, 'a'));
  store.put("b", blob(200, 'b'));
  store.put("c", blob(300, 'c'));
  EXPECT_EQ(store.memory_bytes(), 600u);
  EXPECT_FALSE(fs::exists(dir)) << "created only at the first spill";

  ASSERT_EQ(store.get("a").value->view(), std::string(100, 'a'));  // a is now the most recent
  const auto out = store.spill(150);  // b (200) is the least recently used
  EXPECT_EQ(out.bytes, 200u);
  EXPECT_EQ(out.count, 1u);
  EXPECT_FALSE(out.failed);
  EXPECT_TRUE(store.is_spilled("b"));
  EXPECT_FALSE(store.is_spilled("a"));
  EXPECT_EQ(store.memory_bytes(), 400u);
  EXPECT_EQ(store.disk_bytes(), 200u);
  EXPECT_EQ(store.nbytes("b"), 200u);
  EXPECT_EQ(files_in(dir), 1u);

  // Then c, then a.
  EXPECT_EQ(store.spill(301).count, 2u);
  EXPECT_TRUE(store.is_spilled("c"));
  EXPECT_TRUE(store.is_spilled("a"));
  EXPECT_EQ(store.memory_bytes(), 0u);
  EXPECT_EQ(store.disk_count(), 3u);
  EXPECT_EQ(store.counters().spilled, 3u);
  EXPECT_EQ(store.counters().spilled_bytes, 600u);

  // Read back: the same bytes, in memory again, the file gone.
  {
    const auto got = store.get("c");
    ASSERT_TRUE(got.value);
    EXPECT_EQ(got.value->view(), std::string(300, 'c'));
    EXPECT_TRUE(got.error.empty());
  }
  EXPECT_FALSE(store.is_spilled("c"));
  EXPECT_EQ(store.memory_bytes(), 300u);
  EXPECT_EQ(store.disk_bytes(), 300u);
  EXPECT_EQ(files_in(dir), 2u);
  EXPECT_EQ(store.counters().unspilled, 1u);
  EXPECT_EQ(store.counters().unspilled_bytes, 300u);

  // c was read back last: b and a (spilled earlier) go before it when spilling again; a freshly
  // put value is the most recent.
  store.put("d", blob(10, 'd'));
  EXPECT_EQ(store.get("b").value->view(), std::string(200, 'b'));  // the copy goes at once
  EXPECT_EQ(store.spill(1).count, 1u);
  EXPECT_TRUE(store.is_spilled("c"));
  EXPECT_FALSE(store.is_spilled("d"));
  EXPECT_FALSE(store.is_spilled("b"));
}

TEST_F(SpillStoreTest, ValuesInUseElsewhereAreNotSpilled) {
  SpillStore store(dir);
  store.put("a", blob(100, 'a'));
  store.put("b", blob(100, 'b'));
  Value held = store.get("a").value;  // a running task reads it
  store.put("c", blob(100, 'c'));
  const auto out = store.spill(1000);
  EXPECT_EQ(out.count, 2u);  // b and c; a is in use
  EXPECT_FALSE(out.failed);
  EXPECT_FALSE(store.is_spilled("a"));
  EXPECT_EQ(store.memory_bytes(), 100u);
  held.reset();
  EXPECT_EQ(store.spill(1000).count, 1u);
  EXPECT_TRUE(store.is_spilled("a"));
}

TEST_F(SpillStoreTest, EraseAndReplaceDeleteTheFileAndDestructorCleansUp) {
  {
    SpillStore store(dir);
    store.put("a", blob(50, 'a'));
    store.put("b", blob(60, 'b'));
    store.put("c", blob(70, 'c'));
    store.spill(1000);
    EXPECT_EQ(files_in(dir), 3u);
    EXPECT_TRUE(store.erase("a"));
    EXPECT_FALSE(store.erase("a"));
    EXPECT_FALSE(store.contains("a"));
    EXPECT_EQ(files_in(dir), 2u);
    store.put("b", blob(5, 'B'));  // replaces the spilled value
    EXPECT_EQ(files_in(dir), 1u);
    EXPECT_EQ(store.disk_bytes(), 70u);
    EXPECT_EQ(store.memory_bytes(), 5u);
    EXPECT_EQ(store.get("b").value->view(), "BBBBB");
    EXPECT_EQ(store.size(), 2u);
    EXPECT_FALSE(store.get("nothing").value);
    EXPECT_TRUE(store.get("nothing").error.empty());
  }
  EXPECT_FALSE(fs::exists(dir)) << "the store removes the directory it created";
}

TEST_F(SpillStoreTest, EmptyValuesStayInMemoryAndDoNotCount) {
  SpillStore store(dir);
  store.put("empty", blob(0, 'x'));
  store.put("a", blob(10, 'a'));
  EXPECT_EQ(store.spill(10).count, 1u);
  EXPECT_TRUE(store.is_spilled("a"));
  EXPECT_FALSE(store.is_spilled("empty"));
}

// An unwritable place (a path under a regular file fails even for root): the value stays in
// memory, nothing is lost, the failure is counted, and spilling can be tried again.
TEST_F(SpillStoreTest, UnwritableDirectoryKeepsValuesInMemory) {
  const fs::path file = tmp.path() / "not-a-directory";
  std::ofstream(file) << "x";
  SpillStore store(file / "worker");
  store.put("a", blob(100, 'a'));
  store.put("b", blob(100, 'b'));
  auto out = store.spill(200);
  EXPECT_TRUE(out.failed);
  EXPECT_EQ(out.count, 0u);
  EXPECT_EQ(store.memory_bytes(), 200u);
  EXPECT_FALSE(store.is_spilled("a"));
  EXPECT_EQ(store.get("a").value->view(), std::string(100, 'a'));
  EXPECT_EQ(store.counters().write_failures, 1u);
  out = store.spill(200);  // tried again: fails again, still nothing lost
  EXPECT_TRUE(out.failed);
  EXPECT_EQ(store.counters().write_failures, 2u);
  EXPECT_EQ(store.get("b").value->view(), std::string(100, 'b'));
}

// A disk that fills up in the middle of a write (RLIMIT_FSIZE makes write(2) fail with EFBIG, as
// ENOSPC would): the partial file is removed and the value stays in memory; smaller values that
// fit are still spilled.
TEST_F(SpillStoreTest, DiskFullMidWriteRemovesThePartialFile) {
  struct sigaction ignore {}, old {};
  ignore.sa_handler = SIG_IGN;
  ASSERT_EQ(::sigaction(SIGXFSZ, &ignore, &old), 0);
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  rlimit small = saved;
  small.rlim_cur = 64 * 1024;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);

  SpillStore store(dir);
  store.put("big", blob(1 << 20, 'g'));
  store.put("small", blob(1000, 's'));
  const auto out = store.spill(1 << 21);
  ::setrlimit(RLIMIT_FSIZE, &saved);
  ::sigaction(SIGXFSZ, &old, nullptr);

  EXPECT_TRUE(out.failed);
  EXPECT_EQ(out.count, 0u);  // big is first and fails; spilling stops there
  EXPECT_FALSE(store.is_spilled("big"));
  EXPECT_EQ(files_in(dir), 0u) << "the partial file is removed";
  EXPECT_EQ(store.get("big").value->view(), std::string(1 << 20, 'g'));
  // With room again (and big now the most recent), small goes first, then big.
  const auto again = store.spill(1 << 21);
  EXPECT_FALSE(again.failed);
  EXPECT_EQ(again.count, 2u);
  EXPECT_EQ(store.get("big").value->view(), std::string(1 << 20, 'g'));
}

// A spilled file that is gone or damaged: get() says why and drops the key; nothing throws.
TEST_F(SpillStoreTest, UnreadableSpilledFileDropsTheKeyWithAReason) {
  SpillStore store(dir);
  store.put("gone", blob(100, 'g'));
  store.put("short", blob(100, 's'));
  store.put("fine", blob(100, 'f'));
  ASSERT_EQ(store.spill(1000).count, 3u);
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir)) files.push_back(e.path());
  std::sort(files.begin(), files.end());  // numbered in spill order: gone, short, fine
  ASSERT_EQ(files.size(), 3u);
  fs::remove(files[0]);
  fs::resize_file(files[1], 10);

  auto got = store.get("gone");
  EXPECT_FALSE(got.value);
  EXPECT_THAT(got.error, HasSubstr("cannot open"));
  EXPECT_FALSE(store.contains("gone"));
  got = store.get("short");
  EXPECT_FALSE(got.value);
  EXPECT_THAT(got.error, HasSubstr("holds 10 bytes, expected 100"));
  EXPECT_FALSE(store.contains("short"));
  EXPECT_EQ(store.counters().read_failures, 2u);
  EXPECT_EQ(store.disk_bytes(), 100u);
  EXPECT_EQ(store.get("fine").value->view(), std::string(100, 'f'));
  EXPECT_EQ(files_in(dir), 0u);
}

}  // namespace
}  // namespace plexus::worker
