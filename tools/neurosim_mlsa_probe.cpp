// Evaluates DNN+NeuroSim V1.4's own sense-amp (multilevel current-mode ADC) circuit model at one
// sub-array configuration and prints the primitives vitc's ADC model uses (gate/junction
// capacitances, column capacitance, reference-column energy, dummy-column geometry, areas) and
// NeuroSim's ADC energy for a few column resistances, so that backends/adc_model.py can be checked
// against the simulator itself. Built by benchmarks/neurosim_adc_check.py against NeuroSim's objects
// (it links them; nothing of NeuroSim is copied here).
//
//   usage: probe ROWS LEVELS COLS_MUXED ROWS_PARALLEL R1 [R2 ...]
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

int main(int argc, char **argv) {
    if (argc < 6) { std::fprintf(stderr, "usage: %s ROWS LEVELS COLS_MUXED ROWS_PARALLEL R...\n", argv[0]); return 2; }
    param->numRowSubArray = param->numColSubArray = std::atoi(argv[1]);
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
    sa->CalculateLatency(1e20, std::vector<double>(sa->numCol, 1e5), true);
    std::printf("],\n \"mlsa_latency\": %.9g}\n", m.readLatency);
    return 0;
}
