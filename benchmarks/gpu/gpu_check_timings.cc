#include "benchmarks/gpu/gpu_check_timings.h"

#include "benchmarks/gpu/gpu_check_common.h"

namespace embsum::scoring::gpu_check {
namespace {

// ---------------------------------------------------------------------------
// 2. Timings.

struct DeviceUsers {
  DeviceBuffer users, prepared, rows, offsets, scores, codes;
};

// Times LaunchFusedScore (user preparation + fused kernel) between events.
// Seconds: the stream is idle when the start event fires, so the time
// includes the host's launch latency (the measure of runs 1 and 2).
// DeviceSeconds: a delay kernel holds the stream until the launches are
// queued behind the start event, so the time is the device's alone
// (kernels and the gaps between them).
class KernelTimer {
 public:
  static constexpr uint32_t kDelayUs = 100;

  KernelTimer() {
    CHECK_OK(stream_.Create());
    CHECK_OK(start_.Create());
    CHECK_OK(stop_.Create());
  }
  double Seconds(const FusedBatch& batch, const LaunchPlan& plan,
                 bool device_only = false) {
    if (device_only) {
      CHECK_OK(cuda_internal::LaunchDelay(kDelayUs, stream_.get()));
    }
    CHECK_CUDA(cudaEventRecord(start_.get(), stream_.get()));
    CHECK_OK(cuda_internal::LaunchFusedScore(batch, plan, stream_.get()));
    CHECK_CUDA(cudaEventRecord(stop_.get(), stream_.get()));
    float ms = 0;
    CHECK_OK(cuda_internal::ElapsedMs(start_, stop_, &ms));
    return ms * 1e-3;
  }
  cudaStream_t stream() const { return stream_.get(); }

 private:
  Stream stream_;
  Event start_, stop_;
};

}  // namespace

void TimeDtype(const Flags& flags, DType dtype, double copy_bw,
               const DeviceLimits& limits, std::mt19937_64& rng, Report& report,
               bool* ok) {
  const std::string name(DTypeName(dtype));
  const uint32_t m = 32, n = 8, d = 512;
  const size_t items = flags.scan_items;
  const ArenaLayout layout{n, d, dtype, true};
  const size_t row_bytes = layout.row_bytes();
  auto t0 = std::chrono::steady_clock::now();
  ItemArena arena(layout, items);
  FillArena(arena, items, rng(), 2.0);
  const double fill_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
          .count();
  DeviceBuffer dev_arena;
  CHECK_OK(dev_arena.Reserve(items * row_bytes));
  t0 = std::chrono::steady_clock::now();
  CHECK_CUDA(cudaMemcpy(dev_arena.get(), arena.data(), items * row_bytes,
                        cudaMemcpyHostToDevice));
  const double upload_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
          .count();
  std::printf(
      "  %s: arena of %zu items (%.1f GB) filled in %.1f s, uploaded "
      "in %.1f s\n",
      name.c_str(), items, items * row_bytes / 1e9, fill_s, upload_s);

  const size_t user_floats = size_t{m} * d;
  const uint32_t max_users = 256;
  const uint32_t per_user = 500;
  std::vector<float> host_users(max_users * 2 * user_floats);
  FillRandom(rng, 2.0, d, host_users);
  DeviceUsers dev;
  CHECK_OK(dev.users.Reserve(host_users.size() * 4));
  CHECK_CUDA(cudaMemcpy(dev.users.get(), host_users.data(),
                        host_users.size() * 4, cudaMemcpyHostToDevice));
  // 16 row sets for the single-user runs (rotated so that repeated runs do
  // not read a cached working set), then 256 x 500 rows for the batches.
  constexpr int kRowSets = 16;
  const size_t total_rows = size_t{kRowSets} * per_user + max_users * per_user;
  std::vector<uint32_t> host_rows(total_rows);
  for (uint32_t& r : host_rows) r = static_cast<uint32_t>(rng() % items);
  CHECK_OK(dev.rows.Reserve(total_rows * 4));
  CHECK_CUDA(cudaMemcpy(dev.rows.get(), host_rows.data(), total_rows * 4,
                        cudaMemcpyHostToDevice));
  std::vector<uint32_t> offsets(max_users + 1);
  for (uint32_t u = 0; u <= max_users; ++u) offsets[u] = u * per_user;
  CHECK_OK(dev.offsets.Reserve(offsets.size() * 4));
  CHECK_CUDA(cudaMemcpy(dev.offsets.get(), offsets.data(), offsets.size() * 4,
                        cudaMemcpyHostToDevice));
  CHECK_OK(dev.scores.Reserve(std::max(items, total_rows) * 4));
  CHECK_OK(dev.codes.Reserve(std::max(items, total_rows) * 4));

  ScoreShape shape{m, n, d, dtype, true, true};
  KernelTimer timer;
  auto batch_for = [&](uint32_t users, const uint32_t* rows, uint32_t count) {
    FusedBatch b;
    b.arena = dev_arena.as<std::byte>();
    b.row_bytes = row_bytes;
    b.shape = shape;
    b.num_users = users;
    b.users = dev.users.as<float>();
    b.user_stride = 2 * user_floats;
    b.prepared = dev.prepared.as<std::byte>();
    b.rows = rows;
    b.offsets = users > 1 ? dev.offsets.as<uint32_t>() : nullptr;
    b.count = count;
    b.scores = dev.scores.as<float>();
    b.codes = dev.codes.as<int32_t>();
    return b;
  };

  // Rank(500) at S1: the default plan, then a sweep of the kernel's knobs
  // (d-axis split, row-load mode, user preparation in a separate pass or in
  // every block), each variant checked against the reference.
  {
    const LaunchPlan plan =
        cuda_internal::PlanLaunch(shape, 1, per_user, per_user, limits);
    CHECK_OK(dev.prepared.Reserve(max_users * plan.prepared_bytes));
    const UserView user0{
        m, d, std::span<const float>(host_users).subspan(0, user_floats),
        std::span<const float>(host_users).subspan(user_floats, user_floats)};
    std::vector<Ref> refs(per_user);
    ParallelFor(per_user, [&](size_t b, size_t e) {
      for (size_t c = b; c < e; ++c) {
        refs[c] = RowReference(arena, m, user0, host_rows[c]);
      }
    });
    // Median host-launched time; *device_t: median device-only time.
    auto time_rank = [&](const LaunchPlan& p, int reps, double* err,
                         double* device_t) {
      std::vector<double> times, device_times;
      for (int i = 0; i < 10 + reps; ++i) {
        const uint32_t* rows =
            dev.rows.as<uint32_t>() + (i % kRowSets) * per_user;
        const double t = timer.Seconds(batch_for(1, rows, per_user), p);
        const double dt = timer.Seconds(batch_for(1, rows, per_user), p, true);
        if (i >= 10) {
          times.push_back(t);
          device_times.push_back(dt);
        }
      }
      *device_t = Median(device_times);
      CHECK_CUDA(cudaMemset(dev.scores.get(), 0xff, per_user * 4));
      timer.Seconds(batch_for(1, dev.rows.as<uint32_t>(), per_user), p);
      std::vector<float> scores(per_user);
      CHECK_CUDA(cudaMemcpy(scores.data(), dev.scores.get(), per_user * 4,
                            cudaMemcpyDeviceToHost));
      *err = 0;
      for (size_t c = 0; c < per_user; ++c) {
        *err = std::max(*err, RelErr(scores[c], refs[c]));
      }
      return Median(times);
    };
    double err = 0, device_t = 0;
    const double t = time_rank(plan, flags.rank_reps, &err, &device_t);
    const double bound = dtype == DType::kFloat32 ? 1e-5 : 1e-4;
    *ok = *ok && err <= bound;
    const double bytes = per_user * double(row_bytes);
    report.Add("rank500_" + name + "_kernel_us", t * 1e6);
    report.Add("rank500_" + name + "_device_us", device_t * 1e6);
    report.Add("rank500_" + name + "_plan_ksplit", plan.ksplit);
    report.Line(Fmt(
        "Rank(500) S1 %s: kernel %.2f us host-launched, %.2f us device "
        "only, medians of %d (default plan: ksplit %u, %u blocks x %u "
        "warps, load_mode %u, prepare_mode %u, epilogue_mode %u); %.0f GB/s "
        "of item rows; max rel err %.1e; target <= 20 us",
        name.c_str(), t * 1e6, device_t * 1e6, flags.rank_reps, plan.ksplit,
        plan.blocks_x, plan.warps, plan.load_mode, plan.prepare_mode,
        plan.epilogue_mode, bytes / t / 1e9, err));
    // The sweep: k<ksplit>_l<load_mode>_p<prepare_mode>_e<epilogue_mode>,
    // host-launched / device-only us; the old default is k8_l1_p0_e0.
    double best = HUGE_VAL, best_device = HUGE_VAL;
    std::string best_name, best_device_name;
    std::string sweep = "  Rank(500) sweep " + name +
                        " (variant: host-launched/device-only us):";
    for (uint32_t ksplit : {4u, 8u, 16u}) {
      for (uint32_t prepare :
           {cuda_internal::kPreparePass, cuda_internal::kPreparePassOverlap,
            cuda_internal::kPrepareScatter}) {
        for (uint32_t load :
             {cuda_internal::kLoadL2Fetch256,
              cuda_internal::kLoadL2Fetch256 | cuda_internal::kLoadEarly}) {
          for (uint32_t epilogue : {cuda_internal::kEpilogueSerial,
                                    cuda_internal::kEpilogueReduce}) {
            LaunchPlan v = plan;
            v.ksplit = ksplit;
            v.warps = plan.warps / ksplit * ksplit;
            const uint32_t groups = v.warps / ksplit;
            const uint32_t tasks =
                (per_user + v.candidates_per_task - 1) / v.candidates_per_task;
            v.blocks_x = std::min<uint32_t>((tasks + groups - 1) / groups,
                                            limits.sm_count);
            v.load_mode = load;
            v.prepare_mode = prepare;
            v.epilogue_mode = epilogue;
            double verr = 0, vdt = 0;
            const double vt = time_rank(v, 100, &verr, &vdt);
            const std::string vname =
                Fmt("k%u_l%u_p%u_e%u", ksplit, load, prepare, epilogue);
            report.Add("rank500_" + name + "_variant_" + vname + "_us",
                       vt * 1e6);
            report.Add("rank500_" + name + "_variant_" + vname + "_device_us",
                       vdt * 1e6);
            sweep += Fmt(" %s:%.1f/%.1f", vname.c_str(), vt * 1e6, vdt * 1e6);
            if (verr > bound) {
              *ok = false;
              std::printf("  VARIANT %s WRONG: max rel err %.2e\n",
                          vname.c_str(), verr);
              continue;  // never the best
            }
            if (vt < best) {
              best = vt;
              best_name = vname;
            }
            if (vdt < best_device) {
              best_device = vdt;
              best_device_name = vname;
            }
          }
        }
      }
    }
    std::printf("%s\n", sweep.c_str());
    report.Add("rank500_" + name + "_best_us", best * 1e6);
    report.AddString("rank500_" + name + "_best_variant", best_name);
    report.Add("rank500_" + name + "_best_device_us", best_device * 1e6);
    report.AddString("rank500_" + name + "_best_device_variant",
                     best_device_name);
    report.Line(
        Fmt("Rank(500) S1 %s best correct variant: %s %.2f us "
            "host-launched; %s %.2f us device only",
            name.c_str(), best_name.c_str(), best * 1e6,
            best_device_name.c_str(), best_device * 1e6));
  }

  // One launch for 1..256 users of 500 candidates each: the default plan,
  // then the variant with the new modes (early loads, scatter preparation,
  // parallel reduction); host-launched times, as in runs 1 and 2.
  for (const bool new_modes : {false, true}) {
    double t1 = 0;
    std::string line = "batched launch " + name +
                       (new_modes ? " variant l9_p2_e1" : "") +
                       " (per-user us, gain vs 1):";
    for (uint32_t users = 1; users <= max_users; users *= 2) {
      const uint32_t total = users * per_user;
      LaunchPlan plan =
          cuda_internal::PlanLaunch(shape, users, per_user, total, limits);
      if (new_modes) {
        plan.load_mode =
            cuda_internal::kLoadL2Fetch256 | cuda_internal::kLoadEarly;
        plan.prepare_mode = cuda_internal::kPrepareScatter;
        plan.epilogue_mode = cuda_internal::kEpilogueReduce;
      }
      const uint32_t* rows = dev.rows.as<uint32_t>() + kRowSets * per_user;
      FusedBatch b = batch_for(users, rows, total);
      b.offsets = dev.offsets.as<uint32_t>();
      std::vector<double> times;
      for (int i = 0; i < 5 + 30; ++i) {
        const double t = timer.Seconds(b, plan);
        if (i >= 5) times.push_back(t);
      }
      const double t = Median(times);
      if (users == 1) t1 = t;
      const double gain = users * t1 / t;
      const std::string key = Fmt("batch_%s%s_users%u", name.c_str(),
                                  new_modes ? "_variant" : "", users);
      report.Add(key + "_us", t * 1e6);
      report.Add(key + "_gain", gain);
      line += Fmt(" %u:%.2f/x%.1f", users, t * 1e6 / users, gain);
    }
    report.Line(line);
  }

  // Full scan: the default plan, then a sweep of d-axis split and load
  // mode, each checked on a sample of rows against the reference.
  {
    const uint32_t count = static_cast<uint32_t>(items);
    const UserView user{
        m, d, std::span<const float>(host_users).subspan(0, user_floats),
        std::span<const float>(host_users).subspan(user_floats, user_floats)};
    std::vector<uint32_t> sample(256);
    for (uint32_t& r : sample) r = static_cast<uint32_t>(rng() % items);
    std::vector<Ref> refs(sample.size());
    ParallelFor(sample.size(), [&](size_t b, size_t e) {
      for (size_t i = b; i < e; ++i) {
        refs[i] = RowReference(arena, m, user, sample[i]);
      }
    });
    const double bound = dtype == DType::kFloat32 ? 1e-5 : 1e-4;
    std::vector<float> scores(items);
    auto time_scan = [&](const LaunchPlan& p, int reps, double* err) {
      CHECK_CUDA(cudaMemset(dev.scores.get(), 0xff, items * 4));
      std::vector<double> times;
      for (int i = 0; i < 2 + reps; ++i) {
        const double t = timer.Seconds(batch_for(1, nullptr, count), p);
        if (i >= 2) times.push_back(t);
      }
      CHECK_CUDA(cudaMemcpy(scores.data(), dev.scores.get(), items * 4,
                            cudaMemcpyDeviceToHost));
      *err = 0;
      for (size_t i = 0; i < sample.size(); ++i) {
        *err = std::max(*err, RelErr(scores[sample[i]], refs[i]));
      }
      return Median(times);
    };
    const LaunchPlan plan =
        cuda_internal::PlanLaunch(shape, 1, count, count, limits);
    double err = 0;
    const double t = time_scan(plan, 15, &err);
    *ok = *ok && err <= bound;
    const double bw = items * double(row_bytes) / t;
    report.Add("scan_" + name + "_ms", t * 1e3);
    report.Add("scan_" + name + "_GBps", bw / 1e9);
    report.Add("scan_" + name + "_frac_of_copy", bw / copy_bw);
    report.Add("scan_" + name + "_sample_max_rel_err", err);
    report.Line(
        Fmt("full scan %zu items %s: %.3f ms, %.0f GB/s = %.0f%% of "
            "the copy bandwidth (target >= 70%%; default plan ksplit "
            "%u load_mode %u); sample max rel err %.1e",
            items, name.c_str(), t * 1e3, bw / 1e9, 100.0 * bw / copy_bw,
            plan.ksplit, plan.load_mode, err));
    double best = HUGE_VAL;
    std::string best_name;
    // k<ksplit>_l<load_mode>_p<prepare_mode>; the old default is k1_l1_p0.
    std::string sweep = "  scan sweep " + name + " (variant: % of copy):";
    for (uint32_t ksplit : {1u}) {
      for (uint32_t load : {1u, 9u, 3u, 11u, 13u}) {
        for (uint32_t prepare :
             {cuda_internal::kPreparePass, cuda_internal::kPrepareScatter}) {
          LaunchPlan v = plan;
          v.ksplit = ksplit;
          v.warps = plan.warps / ksplit * ksplit;
          v.load_mode = load;
          v.prepare_mode = prepare;
          double verr = 0;
          const double vt = time_scan(v, 8, &verr);
          const std::string vname = Fmt("k%u_l%u_p%u", ksplit, load, prepare);
          const double frac = items * double(row_bytes) / vt / copy_bw;
          report.Add("scan_" + name + "_variant_" + vname + "_frac", frac);
          sweep += Fmt(" %s:%.0f", vname.c_str(), 100 * frac);
          if (verr > bound) {
            *ok = false;
            std::printf("  VARIANT %s WRONG: max rel err %.2e\n", vname.c_str(),
                        verr);
            continue;  // never the best
          }
          if (vt < best) {
            best = vt;
            best_name = vname;
          }
        }
      }
    }
    std::printf("%s\n", sweep.c_str());
    const double best_bw = items * double(row_bytes) / best;
    report.Add("scan_" + name + "_best_frac_of_copy", best_bw / copy_bw);
    report.AddString("scan_" + name + "_best_variant", best_name);
    report.Line(Fmt("full scan %s best variant %s: %.0f GB/s = %.0f%% of copy",
                    name.c_str(), best_name.c_str(), best_bw / 1e9,
                    100.0 * best_bw / copy_bw));
  }
  dev_arena.Reset();

  // The public scorer on the same arena: ScoreAllTopK and Score end to end,
  // and concurrent throughput with and without dynamic batching (bf16 only:
  // each scorer mirrors the arena).
  const UserView user{
      m, d, std::span<const float>(host_users).subspan(0, user_floats),
      std::span<const float>(host_users).subspan(user_floats, user_floats)};
  {
    CudaScorerOptions options;
    options.batch_window_us = 0;
    std::unique_ptr<Scorer> scorer;
    CHECK_OK(MakeCudaScorer(options, &scorer));
    std::vector<ScoredRow> top;
    t0 = std::chrono::steady_clock::now();
    CHECK_OK(scorer->ScoreAllTopK(user, arena, {}, 100, &top));  // mirrors
    const double mirror_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
            .count();
    std::vector<double> times;
    for (int i = 0; i < 7; ++i) {
      t0 = std::chrono::steady_clock::now();
      CHECK_OK(scorer->ScoreAllTopK(user, arena, {}, 100, &top));
      times.push_back(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
              .count());
    }
    double worst = 0;
    for (const ScoredRow& r : top) {
      worst =
          std::max(worst, RelErr(r.score, RowReference(arena, m, user, r.row)));
    }
    bool sorted = true;
    for (size_t i = 1; i < top.size(); ++i)
      sorted = sorted && top[i - 1].score >= top[i].score;
    *ok = *ok && sorted && top.size() == 100 &&
          worst <= (dtype == DType::kFloat32 ? 1e-5 : 1e-4);
    report.Add("topk_" + name + "_ms", Median(times) * 1e3);
    report.Line(
        Fmt("ScoreAllTopK(k=100) %s over %zu items end to end: %.2f "
            "ms median (first call, with the arena upload: %.1f s); "
            "top-100 max rel err %.2e, sorted %s",
            name.c_str(), items, Median(times) * 1e3, mirror_s, worst,
            sorted ? "yes" : "NO"));
    // Score(500) end to end (host to host), no batching window.
    std::vector<float> scores(per_user);
    std::vector<int32_t> codes(per_user);
    times.clear();
    for (int i = 0; i < 20 + 200; ++i) {
      const std::span<const uint32_t> rs(
          host_rows.data() + (i % kRowSets) * per_user, per_user);
      t0 = std::chrono::steady_clock::now();
      CHECK_OK(scorer->Score(user, arena, rs, scores, codes));
      if (i >= 20) {
        times.push_back(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
                .count());
      }
    }
    report.Add("score500_" + name + "_end_to_end_us", Median(times) * 1e6);
    report.Line(
        Fmt("Score(500) %s end to end (host in, host out, no "
            "batching window): %.1f us median",
            name.c_str(), Median(times) * 1e6));
  }
  if (dtype == DType::kBFloat16 && !flags.quick) {
    for (uint32_t window : {0u, 100u}) {
      CudaScorerOptions options;
      options.batch_window_us = window;
      std::unique_ptr<Scorer> scorer;
      CHECK_OK(MakeCudaScorer(options, &scorer));
      std::vector<float> warm(per_user);
      CHECK_OK(scorer->Score(
          user, arena, std::span<const uint32_t>(host_rows.data(), per_user),
          warm, {}));
      std::string line =
          Fmt("concurrent Score(500) bf16, window %u us "
              "(threads: calls/s, p50 us):",
              window);
      for (int threads : {1, 8, 32, 128}) {
        std::atomic<bool> stop{false};
        std::atomic<uint64_t> calls{0};
        std::vector<std::vector<double>> lat(threads);
        std::vector<std::thread> pool;
        for (int t = 0; t < threads; ++t) {
          pool.emplace_back([&, t] {
            std::vector<float> out(per_user);
            const UserView u{
                m, d,
                std::span<const float>(host_users)
                    .subspan((t % max_users) * 2 * user_floats, user_floats),
                std::span<const float>(host_users)
                    .subspan((t % max_users) * 2 * user_floats + user_floats,
                             user_floats)};
            size_t i = t;
            while (!stop.load(std::memory_order_relaxed)) {
              const std::span<const uint32_t> rs(
                  host_rows.data() + (i++ % kRowSets) * per_user, per_user);
              const auto s = std::chrono::steady_clock::now();
              CHECK_OK(scorer->Score(u, arena, rs, out, {}));
              lat[t].push_back(std::chrono::duration<double>(
                                   std::chrono::steady_clock::now() - s)
                                   .count());
              calls.fetch_add(1, std::memory_order_relaxed);
            }
          });
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(600));
        stop.store(true);
        for (auto& th : pool) th.join();
        std::vector<double> all;
        for (auto& v : lat) all.insert(all.end(), v.begin(), v.end());
        const double qps = calls.load() / 0.6;
        report.Add(
            Fmt("concurrent_bf16_window%u_threads%d_qps", window, threads),
            qps);
        report.Add(
            Fmt("concurrent_bf16_window%u_threads%d_p50_us", window, threads),
            Median(all) * 1e6);
        line += Fmt(" %d:%.0f/%.0f", threads, qps, Median(all) * 1e6);
      }
      report.Line(line);
    }
  }
}

}  // namespace embsum::scoring::gpu_check
