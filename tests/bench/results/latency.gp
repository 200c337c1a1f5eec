set terminal pngcairo size 1100,700 noenhanced
set output '/work/main/tests/bench/results/latency.png'
cd '/work/main/tests/bench/results'
set title 'RTT through the relay against offered load (100 allocations, 160 B ChannelData; server on 1 core)'
set xlabel 'offered load (packets/s, each relayed twice)'
set ylabel 'RTT (us)'
set logscale y
set grid
set key left top
plot 'latency.dat' index 0 using 1:2 with linespoints lw 2 lc 1 pt 7 title 'direct p50', 'latency.dat' index 0 using 1:3 with linespoints lw 1 lc 1 dt 2 pt 6 title 'direct p99', 'latency.dat' index 1 using 1:2 with linespoints lw 2 lc 2 pt 7 title 'ternd p50', 'latency.dat' index 1 using 1:3 with linespoints lw 1 lc 2 dt 2 pt 6 title 'ternd p99', 'latency.dat' index 2 using 1:2 with linespoints lw 2 lc 3 pt 7 title 'ternd-noqos p50', 'latency.dat' index 2 using 1:3 with linespoints lw 1 lc 3 dt 2 pt 6 title 'ternd-noqos p99', 'latency.dat' index 3 using 1:2 with linespoints lw 2 lc 4 pt 7 title 'coturn p50', 'latency.dat' index 3 using 1:3 with linespoints lw 1 lc 4 dt 2 pt 6 title 'coturn p99', 'latency.dat' index 4 using 1:2 with linespoints lw 2 lc 5 pt 7 title 'fwd p50', 'latency.dat' index 4 using 1:3 with linespoints lw 1 lc 5 dt 2 pt 6 title 'fwd p99'
