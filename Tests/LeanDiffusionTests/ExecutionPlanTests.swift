import XCTest
import LeanDiffusion

/// The planned ("traced") UNet computes exactly what the unplanned one does, from a smaller arena.
final class ExecutionPlanTests: XCTestCase {
    func testPlannedUNetMatchesUnplanned() throws {
        let dir = PipelineTests.fixtures.appendingPathComponent("sd1-tiny").path
        let request = PipelineTests.tinyRequest(steps: 6)
        for layout in [Layout.nhwc, .nchw] {
            let planned = try StableDiffusionPipeline(directory: dir, policy: ComputePolicy(layout: layout))
            let unplanned = try StableDiffusionPipeline(directory: dir, policy: ComputePolicy(layout: layout))
            unplanned.planUNet = false
            let a = try planned.generate(request), b = try unplanned.generate(request)
            XCTAssertEqual(a, b, "planned and unplanned images differ (\(layout))")
            XCTAssertTrue(unplanned.unetPlans.isEmpty)
            let plan = try XCTUnwrap(planned.unetPlans[[2, 4, 8, 8]])
            // PNDM's 7 UNet calls: warm-up, recording, then replays.
            XCTAssertEqual(plan.phase, .replaying, "the plan was abandoned (\(layout))")
            XCTAssertGreaterThan(plan.plannedAllocations, 50)
            XCTAssertGreaterThan(plan.arenaBytes, 0)
            XCTAssertLessThanOrEqual(plan.arenaBytes, plan.recordedPeakBytes,
                                     "the liveness layout needs no more than the allocator's peak")
            print("plan \(layout): \(plan.plannedAllocations) buffers, arena \(plan.arenaBytes) B, unplanned peak \(plan.recordedPeakBytes) B")
            // A second generate replays the same plan.
            XCTAssertEqual(try planned.generate(request), a)
            XCTAssertEqual(plan.phase, .replaying)
        }
    }
}
