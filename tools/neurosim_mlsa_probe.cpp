// Evaluates DNN+NeuroSim V1.4's own sense-amp (multilevel current-mode ADC) circuit model at one
// sub-array configuration and prints the primitives vitc's ADC model uses (gate/junction
// capacitances, column capacitance, reference-column energy, dummy-column geometry, areas) and
// NeuroSim's ADC energy for a few column resistances, so that backends/adc_circuit.py can be checked
// against the simulator itself; and the gate and wire delays and energies of NeuroSim's synchronous
// chip timing (sense cycle and its parts, ripple adder, repeated global-bus wire, register-file
// buffer) that backends/neurosim_timing.py and the neurosim-v14 preset use. It links NeuroSim's
// objects; nothing of NeuroSim is copied here. Build it next to a built NeuroSIM directory:
//
//   g++ -O1 -fopenmp -I NeuroSIM tools/neurosim_mlsa_probe.cpp $(ls NeuroSIM/*.o | grep -v main.o) -o probe
//
//   usage: [PROBE_COLS=C] probe ROWS LEVELS COLS_MUXED ROWS_PARALLEL R1 [R2 ...]
//   (columns default to ROWS; NeuroSim's command line sets the rows only)
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>
#include "constant.h"
#include "formula.h"
#include "Param.h"
#include "SubArray.h"
#include "ProcessingUnit.h"
#include "Definition.h"
#include "Adder.h"
#include "XYBus.h"
#include "Bus.h"
#include "HTree.h"
#include "Buffer.h"
#include "DFF.h"

int main(int argc, char **argv) {
    if (argc < 6) { std::fprintf(stderr, "usage: %s ROWS LEVELS COLS_MUXED ROWS_PARALLEL R...\n", argv[0]); return 2; }
    param->numRowSubArray = param->numColSubArray = std::atoi(argv[1]);
    if (std::getenv("PROBE_COLS")) param->numColSubArray = std::atoi(std::getenv("PROBE_COLS"));
    param->levelOutput = std::atoi(argv[2]);
    param->dumcolshared = param->levelOutput;
    param->numColMuxed = std::atoi(argv[3]);
    param->numRowParallel = std::atoi(argv[4]);
    param->synapseBit = 8; param->numBitInput = 8;
    param->conventionalParallel = (param->operationmode == 2);
    param->conventionalSequential = (param->operationmode == 1);
    param->numColPerSynapse = (int)std::ceil((double)param->synapseBit / param->cellBit);
    SubArray *sa = nullptr;
    ProcessingUnitInitialize(sa, inputParameter, tech, cell, 2, 2, 2, 2);
    MultilevelSenseAmp &m = sa->multilevelSenseAmp;
    std::printf("{\"rows\": %d, \"levels\": %d, \"vdd\": %.9g, \"feature_m\": %.9g,\n", sa->numRow, param->levelOutput, tech.vdd, tech.featureSize);
    std::printf(" \"cg_n\": %.9g, \"cj_n\": %.9g, \"cg_p\": %.9g, \"cj_p\": %.9g,\n", m.gatecap_senseamp_N, m.junctioncap_senseamp_N,
                m.gatecap_senseamp_P, m.junctioncap_senseamp_P);
    std::printf(" \"columncap\": %.9g, \"arrayheight\": %.9g, \"arraywidthunit\": %.9g, \"width_array\": %.9g,\n",
                param->columncap, param->arrayheight, param->arraywidthunit, sa->widthArray);
    std::printf(" \"mlsa_area\": %.9g, \"encoder_area\": %.9g, \"adc_area\": %.9g,\n", m.area, sa->multilevelSAEncoder.area, sa->areaADC);
    {
        double h, w, hn, wn, hl, wl, hi, wi;
        double wN = MIN_NMOS_SIZE * tech.featureSize, wP = tech.pnSizeRatio * MIN_NMOS_SIZE * tech.featureSize;
        double hT = tech.featureSize * MAX_TRANSISTOR_HEIGHT;
        CalculateGateArea(INV, 1, wN, 0, hT, tech, &h, &w);
        CalculateGateArea(INV, 1, wN, wP, hT, tech, &hi, &wi);
        CalculateGateArea(NAND, 2, 4 * wN, 2 * wP, hT, tech, &hn, &wn);
        CalculateGateArea(NAND, (int)std::ceil(param->levelOutput / 2), 4 * wN, 2 * wP, hT, tech, &hl, &wl);
        std::printf(" \"nmos_hw\": [%.9g, %.9g], \"inv_hw\": [%.9g, %.9g], \"nand2_hw\": [%.9g, %.9g], \"nandL_hw\": [%.9g, %.9g],\n",
                    h, w, hi, wi, hn, wn, hl, wl);
        std::printf(" \"wire_res_row\": %.9g, \"wire_res_col\": %.9g, \"res_access\": %.9g, \"ron\": %.9g, \"roff\": %.9g, \"read_voltage\": %.9g, \"access_voltage\": %.9g, \"buffernumber\": %d,\n",
                    param->wireResistanceRow, param->wireResistanceCol, cell.resistanceAccess, param->resistanceOn, param->resistanceOff,
                    param->readVoltage, cell.accessVoltage, (int)param->buffernumber);
    }
    std::printf(" \"rref\": [");
    for (size_t i = 0; i < m.Rref.size(); ++i) std::printf("%s%.9g", i ? ", " : "", m.Rref[i]);
    std::printf("],\n \"energy\": [");
    for (int a = 5; a < argc; ++a) {
        std::vector<double> res(sa->numCol, std::atof(argv[a]));
        sa->activityRowRead = 0.5;
        sa->CalculatePower(res);
        std::printf("%s[%s, %.9g, %.9g]", a > 5 ? ", " : "", argv[a], m.readDynamicEnergy / sa->numCol, sa->readDynamicEnergyArray);
    }
    // one read of the sub-array (an input bit plane, every column converted) at row activity 0 and 1:
    // its "other peripheries" (word-line switch matrix, column mux and its decoder) and accumulation
    std::printf("],\n \"subarray_hw\": [%.9g, %.9g],\n \"read_other_accum\": [", sa->height, sa->width);
    for (int a = 0; a < 2; ++a) {
        std::vector<double> res(sa->numCol, 1e5);
        sa->activityRowRead = a;
        sa->CalculatePower(res);
        std::printf("%s[%d, %.9g, %.9g]", a ? ", " : "", a, sa->readDynamicEnergyOther, sa->readDynamicEnergyAccum);
    }
    sa->CalculateLatency(1e20, std::vector<double>(sa->numCol, 1e5), true);
    std::printf("],\n \"mlsa_latency\": %.9g,\n", m.readLatency);
    // synchronous timing: the sense cycle (clock period candidate, beta included) and its parts
    std::printf(" \"sense_cycle\": %.9g, \"row_delay\": %.9g, \"mux_delay\": %.9g, \"encoder_delay\": %.9g, \"beta\": %.9g,\n",
                sa->readLatency, param->rowdelay, param->muxdelay, sa->multilevelSAEncoder.readLatency, param->beta);
    param->synchronous = false;        // raw delays in seconds below, not clock cycles
    {
        Adder a2(inputParameter, tech, cell), a3(inputParameter, tech, cell);
        a2.Initialize(2, 1, 1e9); a2.CalculateArea(0, 1e-3, NONE); a2.CalculateLatency(1e20, 0, 1);
        a3.Initialize(3, 1, 1e9); a3.CalculateArea(0, 1e-3, NONE); a3.CalculateLatency(1e20, 0, 1);
        std::printf(" \"adder_2bit_delay\": %.9g, \"adder_delay_per_bit\": %.9g,\n", a2.readLatency, a3.readLatency - a2.readLatency);
        // wires as NeuroSim prices them: after CalculateArea (which sizes their repeaters)
        XYBus bus(inputParameter, tech, cell);
        bus.Initialize(8, 8, param->globalBusDelayTolerance, 1024, 1e9);
        bus.CalculateArea(1e-3, 1e-3, param->treeFoldedRatio);
        bus.CalculateLatency(1, 7, 1e-3, 1e-3, 1, 0);          // 1 mm of X bus, no Y
        double dx = bus.readLatency;
        bus.CalculatePower(1, 7, 1e-3, 1e-3, 1, 0);
        double ex = bus.readDynamicEnergy;
        std::printf(" \"bus_delay_s_per_mm\": %.9g, \"bus_energy_j_per_bit_mm\": %.9g,\n", dx, ex);
        // a PE's bus over 5 sub-arrays of 1 mm (4 mm of wire), one output bit (toggle outputtoggle)
        Bus pe(inputParameter, tech, cell);
        pe.Initialize(HORIZONTAL, 5, 5, 0, 128, 1e-3, 1e-3, 1e9);
        pe.CalculateArea(1, true);
        pe.CalculatePower(1, 1, false);
        // a tile's H-tree over 2x2 PEs of 1 mm: root to a PE is 0.5 + 0.5 + 1 mm of wire
        HTree tree(inputParameter, tech, cell);
        tree.Initialize(2, 2, param->localBusDelayTolerance, 1024, 1e9);
        tree.CalculateArea(1e-3, 1e-3, 16);
        tree.CalculatePower(0, 0, 0, 0, 1e-3, 1e-3, 1, 1);
        std::printf(" \"pe_bus_energy_j_per_bit_mm\": %.9g, \"tile_tree_energy_j_per_bit_mm\": %.9g,\n",
                    pe.readDynamicEnergy / param->outputtoggle / 4, tree.readDynamicEnergy / 2);
        // register-file buffers (Buffer.cpp, DFF based): energy per bit read / written, for a buffer of
        // numBit bits in lines of width bits (args: tile core, global core, a small tile buffer)
        const int shapes[3][2] = {{param->tileBufferCoreSizeRow * param->tileBufferCoreSizeCol, param->tileBufferCoreSizeCol},
                                  {param->globalBufferCoreSizeRow * param->globalBufferCoreSizeCol, param->globalBufferCoreSizeCol},
                                  {800, 50}};
        std::printf(" \"regfile_j_per_bit\": [");
        for (int k = 0; k < 3; ++k) {
            Buffer buf(inputParameter, tech, cell);
            buf.Initialize(shapes[k][0], shapes[k][1], 1, param->unitLengthWireResistance, 1e9, false);
            buf.CalculateArea(1e-4, 0, NONE);
            buf.CalculatePower(shapes[k][1], 1, shapes[k][1], 1);
            std::printf("%s[%d, %d, %.9g, %.9g]", k ? ", " : "", shapes[k][0], shapes[k][1],
                        buf.readDynamicEnergy / shapes[k][1], buf.writeDynamicEnergy / shapes[k][1]);
        }
        DFF dff(inputParameter, tech, cell);
        dff.Initialize(1024, 1e9);
        dff.CalculateArea(1e-4, 0, NONE);
        dff.CalculatePower(1, 1024, false);
        // areas per bit of a PE's adder trees (full adders) and register files (DFFs), laid out in a
        // 100 um wide strip as NeuroSim lays them under a sub-array
        Adder fa(inputParameter, tech, cell);
        fa.Initialize(64, 64, 1e9);
        fa.CalculateArea(0, 1e-4, NONE);
        DFF d2(inputParameter, tech, cell);
        d2.Initialize(4096, 1e9);
        d2.CalculateArea(0, 1e-4, NONE);
        std::printf("], \"dff_j_per_bit\": %.9g, \"full_adder_area_m2_per_bit\": %.9g, \"dff_area_m2_per_bit\": %.9g}\n",
                    dff.readDynamicEnergy / 1024, fa.area / (64 * 64), d2.area / 4096);
    }
    return 0;
}
